package config

import (
	"fmt"
	"strings"
)

// EnvTable is the README's table of environment variables and CLI flags,
// rendered from the settings table (TestREADME keeps the two equal).
func EnvTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Flag | Meaning | Default |\n|---|---|---|---|\n")
	for _, s := range table {
		if s.Env == "" {
			continue
		}
		flag := ""
		if s.Flag != "" {
			flag = "`--" + s.Flag + "`"
		}
		def := docDefault(s)
		if s.Secret {
			def = "secret: from the environment, or Secrets Manager in AWS"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Env, flag, docText(s.Help), def)
	}
	return b.String()
}

// ContextTable is the README's table of CDK context keys.
func ContextTable() string {
	var b strings.Builder
	b.WriteString("| Key | Meaning | Default |\n|---|---|---|\n")
	for _, s := range table {
		if s.Context == "" {
			continue
		}
		help := s.Help
		if s.ContextUnit == miB {
			help += " (a bare number is MiB)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Context, docText(help), docDefault(s))
	}
	return b.String()
}

func docDefault(s Setting) string {
	if s.Default == "" {
		return "none"
	}
	return "`" + s.Default + "`"
}

func docText(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "`", ""), "|", `\|`) }
