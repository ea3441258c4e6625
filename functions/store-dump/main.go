// Command store-dump is the Lambda function behind the workflow's StoreDump step.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/d1backup/d1backup/internal/step"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	lambda.Start(step.Load(context.Background(), step.Options{Store: true, BoundMemory: true, Version: version}).StoreDump)
}
