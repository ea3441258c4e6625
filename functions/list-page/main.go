// Command list-page is the Lambda function of the workflow step registered as
// "list-page" in internal/step's Registry.
package main

import "github.com/d1backup/d1backup/internal/step"

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() { step.Main("list-page", version) }
