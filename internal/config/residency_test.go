package config_test

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/d1backup/d1backup/internal/config"
)

const account = "0123456789abcdef0123456789abcdef"

func TestJurisdictionEndpoint(t *testing.T) {
	for _, tt := range []struct {
		env          map[string]string
		endpoint     string
		jurisdiction string
	}{
		{nil, "https://" + account + ".r2.cloudflarestorage.com", "default"},
		{map[string]string{"R2_JURISDICTION": "eu"}, "https://" + account + ".eu.r2.cloudflarestorage.com", "eu"},
		{map[string]string{"R2_JURISDICTION": "fedramp"}, "https://" + account + ".fedramp.r2.cloudflarestorage.com", "fedramp"},
		{map[string]string{"R2_ENDPOINT": "https://" + account + ".eu.r2.cloudflarestorage.com"}, "https://" + account + ".eu.r2.cloudflarestorage.com", "eu"},
		{map[string]string{"R2_ENDPOINT": "https://X.FedRAMP.r2.cloudflarestorage.com:443/"}, "https://X.FedRAMP.r2.cloudflarestorage.com:443/", "fedramp"},
		{map[string]string{"R2_ENDPOINT": "https://127.0.0.1:9000"}, "https://127.0.0.1:9000", "default"},
		{map[string]string{"R2_ENDPOINT": "https://europe.example.com"}, "https://europe.example.com", "default"},
		{map[string]string{"R2_ENDPOINT": "https://" + account + ".eu.r2.cloudflarestorage.com", "R2_JURISDICTION": "eu"}, "https://" + account + ".eu.r2.cloudflarestorage.com", "eu"},
	} {
		e := map[string]string{"CLOUDFLARE_ACCOUNT_ID": account}
		for k, v := range tt.env {
			e[k] = v
		}
		c, err := config.FromEnv(env(e))
		if err != nil {
			t.Fatalf("%v: %v", tt.env, err)
		}
		if got := c.Endpoint(); got != tt.endpoint {
			t.Errorf("%v: endpoint %s, want %s", tt.env, got, tt.endpoint)
		}
		if got := c.BucketJurisdiction(); got != tt.jurisdiction {
			t.Errorf("%v: jurisdiction %s, want %s", tt.env, got, tt.jurisdiction)
		}
		e["R2_BUCKET"] = "backups"
		c, _ = config.FromEnv(env(e))
		if got := c.Residency(""); got != tt.jurisdiction {
			t.Errorf("%v: bucket residency %q, want %q", tt.env, got, tt.jurisdiction)
		}
		if got := c.Residency("./folder"); got != "" {
			t.Errorf("%v: folder residency %q, want none", tt.env, got)
		}
		if got := c.Backup("v").DestJurisdiction; got != tt.jurisdiction {
			t.Errorf("%v: pipeline destination jurisdiction %q, want %q", tt.env, got, tt.jurisdiction)
		}
	}
}

func TestResidencySettingsErrors(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"R2_JURISDICTION": "us"}, `R2_JURISDICTION="us": must be one of default, eu, fedramp`},
		{map[string]string{"R2_JURISDICTION": "eu", "R2_ENDPOINT": "https://x.r2.cloudflarestorage.com"}, "R2_JURISDICTION=eu, but R2_ENDPOINT https://x.r2.cloudflarestorage.com is not an endpoint of that jurisdiction"},
		{map[string]string{"D1BACKUP_ALLOW_CROSS_JURISDICTION": "sure"}, `D1BACKUP_ALLOW_CROSS_JURISDICTION="sure": must be true or false`},
		{map[string]string{"D1BACKUP_METHOD": "dump"}, `D1BACKUP_METHOD="dump": must be one of export, query, auto`},
	} {
		_, err := config.FromEnv(env(tt.env))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("FromEnv(%v) = %v, want an error starting %q", tt.env, err, tt.want)
		}
	}
	_, err := config.FromContext(func(k string) any {
		return map[string]any{"r2Jurisdiction": "fedramp", "r2Endpoint": "https://x.eu.r2.cloudflarestorage.com"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "R2_JURISDICTION=fedramp") {
		t.Errorf("context with a contradicting endpoint = %v, want an error", err)
	}
}

func TestMethodAndCrossJurisdiction(t *testing.T) {
	c := config.Defaults()
	if c.Method != "auto" || c.AllowCrossJurisdiction || c.R2Jurisdiction != "default" {
		t.Errorf("defaults: method %q, allow %v, jurisdiction %q; want auto, false, default", c.Method, c.AllowCrossJurisdiction, c.R2Jurisdiction)
	}
	c, err := config.FromContext(func(k string) any {
		return map[string]any{"method": "query", "allowCrossJurisdiction": true, "r2Jurisdiction": "eu"}[k]
	})
	if err != nil || c.Method != "query" || !c.AllowCrossJurisdiction {
		t.Fatalf("context: %+v (%v)", c, err)
	}
	env := config.LambdaEnv(c)
	for k, want := range map[string]string{"D1BACKUP_METHOD": "query", "D1BACKUP_ALLOW_CROSS_JURISDICTION": "true", "R2_JURISDICTION": "eu"} {
		if env[k] != want {
			t.Errorf("Lambda env %s = %q, want %q", k, env[k], want)
		}
	}
	for _, tt := range []struct {
		args  []string
		allow bool
		ok    bool
	}{
		{[]string{"--allow-cross-jurisdiction"}, true, true},
		{[]string{"--allow-cross-jurisdiction=false"}, false, true},
		{[]string{"--method", "export"}, false, true},
		{[]string{"--method", "fast"}, false, false},
		{[]string{"--allow-cross-jurisdiction=maybe"}, false, false},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		config.BindFlags(fs, config.SettingMethod, config.SettingAllowCrossJuris)
		c := config.Defaults()
		err := fs.Parse(tt.args)
		if err == nil {
			err = config.ApplyFlags(&c, fs)
		}
		if (err == nil) != tt.ok || (err == nil && c.AllowCrossJurisdiction != tt.allow) {
			t.Errorf("%v: allow %v (%v), want %v ok %v", tt.args, c.AllowCrossJurisdiction, err, tt.allow, tt.ok)
		}
	}
}
