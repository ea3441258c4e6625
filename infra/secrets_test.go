package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
)

// Each secret is read only by the functions whose Options need it, and
// each function is told (D1BACKUP_SECRET_ARNS) exactly those.
func TestSecretsReadOnlyByTheFunctionsThatNeedThem(t *testing.T) {
	st := synth(t, nil)
	ids := map[string]string{
		step.SecretCloudflare: st.logicalID(t, "AWS::SecretsManager::Secret", "CloudflareCredentials"),
		step.SecretR2:         st.logicalID(t, "AWS::SecretsManager::Secret", "R2Credentials"),
		step.SecretSeal:       st.logicalID(t, "AWS::SecretsManager::Secret", "SealingKey"),
	}
	for name, want := range map[string]map[string]string{
		step.SecretCloudflare: {config.EnvAPIToken: ""},
		step.SecretR2:         {config.EnvR2AccessKey: "", config.EnvR2Secret: ""},
		step.SecretSeal:       {},
	} {
		p := st.Resources[ids[name]].Properties
		gen := p["GenerateSecretString"].(map[string]any)
		var tmpl map[string]string
		if err := json.Unmarshal([]byte(gen["SecretStringTemplate"].(string)), &tmpl); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(tmpl, want) {
			t.Errorf("%s: template %v, want %v", name, tmpl, want)
		}
		if _, ok := p["SecretString"]; ok {
			t.Errorf("%s: a value in the template", name)
		}
	}
	if key := st.Resources[ids[step.SecretSeal]].Properties["GenerateSecretString"].(map[string]any)["GenerateStringKey"]; key != config.EnvSealKey {
		t.Errorf("sealing key generated as %v, want %s", key, config.EnvSealKey)
	}

	for _, d := range step.Registry {
		role := st.roleOf(t, "AWS::Lambda::Function", d.State)
		var read, env []string
		for _, s := range st.statements() {
			if slices.Contains(s.roles, role) && slices.Contains(s.actions, "secretsmanager:GetSecretValue") {
				for name, id := range ids {
					if s.resources == js(map[string]any{"Ref": id}) {
						read = append(read, name)
					}
				}
			}
		}
		vars := st.Resources[st.logicalID(t, "AWS::Lambda::Function", d.State)].Properties["Environment"].(map[string]any)["Variables"].(map[string]any)
		for name, id := range ids {
			if strings.Contains(js(vars[config.EnvSecretARNs]), `{"Ref":"`+id+`"}`) {
				env = append(env, name)
			}
		}
		want := d.Options.Secrets()
		slices.Sort(want)
		slices.Sort(read)
		slices.Sort(env)
		if !slices.Equal(read, want) || !slices.Equal(env, want) {
			t.Errorf("%s reads %v and is told of %v, want %v", d.State, read, env, want)
		}
	}
}

// Imported secrets (complete or partial ARNs) are read where the created
// ones would be, and a customer managed key they are encrypted with is
// granted for decryption through Secrets Manager only.
func TestImportedSecrets(t *testing.T) {
	const key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	for _, tt := range []struct{ cloudflare, r2 string }{
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup-cf-AbC123", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:d1backup-r2"},
	} {
		st := synth(t, map[string]any{"cloudflareSecretArn": tt.cloudflare, "r2SecretArn": tt.r2, "secretsKmsKeyArn": key})
		if n := len(st.ofType("AWS::SecretsManager::Secret")); n != 1 {
			t.Errorf("%d secrets created, want only the sealing key", n)
		}
		readers := map[string]int{}
		decrypt := 0
		for _, s := range st.statements() {
			if slices.Contains(s.actions, "secretsmanager:GetSecretValue") {
				switch {
				case strings.Contains(s.resources, "secret:d1backup-cf"):
					readers["cloudflare"]++
				case strings.Contains(s.resources, "secret:d1backup-r2"):
					readers["r2"]++
				}
			}
			if slices.Contains(s.actions, "kms:Decrypt") {
				decrypt++
				if !strings.Contains(s.resources, key) {
					t.Errorf("kms:Decrypt on %s, want %s", s.resources, key)
				}
			}
		}
		want := map[string]int{}
		for _, d := range step.Registry {
			if d.Options.Cloudflare {
				want["cloudflare"]++
			}
			if d.Options.Store {
				want["r2"]++
			}
		}
		if !maps.Equal(readers, want) {
			t.Errorf("readers %v, want %v", readers, want)
		}
		if decrypt == 0 {
			t.Error("no kms:Decrypt on the secrets' key")
		}
		if st.Outputs["CloudflareSecretArn"].(map[string]any)["Value"] != tt.cloudflare {
			t.Errorf("output %v, want %s", st.Outputs["CloudflareSecretArn"], tt.cloudflare)
		}
	}
}
