package main

import (
	"encoding/json"
	"regexp"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
)

type secret = awssecretsmanager.ISecret

// newSecrets makes the three secrets a function may be given (see
// step.Options.Secrets): the Cloudflare API token and the R2 keys, which
// the user fills in after deploying (or imports: cloudflareSecretArn,
// r2SecretArn), and the key that seals signed dump URLs, which
// CloudFormation generates. Each is a JSON object whose keys are the
// environment variables it stands in for; the template holds only empty
// values.
func newSecrets(stack awscdk.Stack, cfg config.Config) map[string]secret {
	var key awskms.IKey
	if cfg.SecretsKMSKeyARN != "" {
		key = awskms.Key_FromKeyArn(stack, jsii.String("SecretsKey"), jsii.String(cfg.SecretsKMSKeyARN))
	}
	return map[string]secret{
		step.SecretCloudflare: userSecret(stack, "CloudflareCredentials", cfg.CloudflareSecretARN, key,
			"d1backup: fill in "+config.EnvAPIToken+" (an API token with Account · D1 · Edit)", config.EnvAPIToken),
		step.SecretR2: userSecret(stack, "R2Credentials", cfg.R2SecretARN, key,
			"d1backup: fill in "+config.EnvR2AccessKey+" and "+config.EnvR2Secret+" (an R2 API token with Object Read & Write on the bucket)",
			config.EnvR2AccessKey, config.EnvR2Secret),
		step.SecretSeal: awssecretsmanager.NewSecret(stack, jsii.String("SealingKey"), &awssecretsmanager.SecretProps{
			Description: jsii.String("d1backup: the key that seals signed dump URLs in workflow state (generated; rotate by putting a new random value)"),
			GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
				SecretStringTemplate: jsii.String("{}"),
				GenerateStringKey:    jsii.String(config.EnvSealKey),
				PasswordLength:       jsii.Number(64),
				ExcludePunctuation:   jsii.Bool(true),
			},
			RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
		}),
	}
}

// completeSecretARN tells a complete ARN (with the random suffix Secrets
// Manager appends to the name) from a partial one.
var completeSecretARN = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)

// userSecret imports arn (with the customer managed key it is encrypted
// with, so that reading it grants kms:Decrypt) or creates a secret whose
// keys the user fills in.
func userSecret(stack awscdk.Stack, id, arn string, key awskms.IKey, description string, keys ...string) secret {
	if arn != "" {
		attrs := &awssecretsmanager.SecretAttributes{EncryptionKey: key}
		if completeSecretARN.MatchString(arn) {
			attrs.SecretCompleteArn = jsii.String(arn)
		} else {
			attrs.SecretPartialArn = jsii.String(arn)
		}
		return awssecretsmanager.Secret_FromSecretAttributes(stack, jsii.String(id), attrs)
	}
	empty := map[string]string{}
	for _, k := range keys {
		empty[k] = ""
	}
	template, err := json.Marshal(empty)
	if err != nil {
		panic(err)
	}
	return awssecretsmanager.NewSecret(stack, jsii.String(id), &awssecretsmanager.SecretProps{
		Description: jsii.String(description),
		// CloudFormation generates the value once, at creation, so later
		// deploys never overwrite what the user put in. It insists on
		// generating one key; the functions ignore it.
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			SecretStringTemplate: jsii.String(string(template)),
			GenerateStringKey:    jsii.String("unused"),
		},
		// Deleting the stack must not destroy credentials the user stored.
		RemovalPolicy: awscdk.RemovalPolicy_RETAIN,
	})
}
