package main

import (
	"flag"
	"fmt"
	"html"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/dashboard.svg from the dashboard's layout")

// TestDashboard: the stack has the dashboard, its widgets read the metric
// names the steps emit and the log groups of the functions that emit them,
// per-database panels are bounded top-N tables (an account of 50,000
// databases still reads), and the stack outputs its URL.
func TestDashboard(t *testing.T) {
	st := synth(t, nil)
	boards := st.ofType("AWS::CloudWatch::Dashboard")
	if len(boards) != 1 {
		t.Fatalf("%d dashboards, want 1", len(boards))
	}
	var body string
	for _, b := range boards {
		body = js(b.Properties["DashboardBody"])
	}
	verify := st.logicalID(t, "AWS::Logs::LogGroup", "VerifyBackupLogs")
	store := st.logicalID(t, "AWS::Logs::LogGroup", "StoreDumpLogs")
	query := st.logicalID(t, "AWS::Logs::LogGroup", "QueryDumpLogs")
	for _, want := range []string{
		`\"metrics\":[[\"D1Backup\",\"BackupSucceeded\"`, `\"D1Backup\",\"DumpBytes\"`, `\"D1Backup\",\"StoredBytes\"`,
		`\"D1Backup\",\"DurationSeconds\"`, `\"D1Backup\",\"BlockedSeconds\"`, `\"D1Backup\",\"RateLimited\"`,
		`AWS/States`, `ExecutionsFailed`, `ExecutionsTimedOut`, `ExecutionThrottled`,
		`sort last_verified asc | limit 25`, `sort sql_bytes desc | limit 10`, `sort blocked_seconds desc | limit 10`,
		`count_distinct(DatabaseId)`, `d1backup status`,
		`{"Ref":"` + verify + `"}`, `{"Ref":"` + store + `"}`, `{"Ref":"` + query + `"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard body lacks %s", want)
		}
	}
	for _, p := range []struct{ title string }{{"Oldest last verified backup (top 25)"}, {"Executions: failed, timed out, throttled"}} {
		if !strings.Contains(body, p.title) {
			t.Errorf("dashboard lacks the panel %q", p.title)
		}
	}
	// Per-database series would grow with the account: none.
	if strings.Contains(body, `\"Database\",`) || strings.Contains(body, `\"DatabaseId\",`) {
		t.Error("a metric widget plots per-database series")
	}
	url := js(st.Outputs["DashboardUrl"])
	if !strings.Contains(url, "#dashboards:name=") || !strings.Contains(url, "cloudwatch/home?region=") {
		t.Errorf("DashboardUrl output %s", url)
	}
	for _, r := range dashboardRows() {
		w := 0
		for _, p := range r {
			w += p.width
		}
		if w != 24 {
			t.Errorf("row %q is %d columns wide, want the dashboard's 24", r[0].title, w)
		}
	}
}

// TestDashboardPicture keeps docs/dashboard.svg (the README's picture of the
// dashboard) drawn from the layout the stack builds. After changing the
// dashboard, run: go test ./infra -run DashboardPicture -update
func TestDashboardPicture(t *testing.T) {
	const path = "../docs/dashboard.svg"
	want := dashboardSVG()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not the dashboard's layout; run: go test ./infra -run DashboardPicture -update", path)
	}
}

// dashboardSVG draws the dashboard's rows as CloudWatch lays them out: 24
// columns, widgets left to right, a row as tall as its tallest widget.
func dashboardSVG() string {
	const col, unit, pad = 40, 30, 4
	var b strings.Builder
	y := 0
	var boxes []string
	for _, r := range dashboardRows() {
		x, h := 0, 0
		for _, p := range r {
			w, ph := p.width*col, p.height*unit
			fill := map[string]string{"text": "#eef2f7", "number": "#e3f1e6", "graph": "#e6eefb", "log table": "#fbf0e0"}[p.kind]
			boxes = append(boxes, fmt.Sprintf(`<rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="%s" stroke="#8a94a6"/>`+
				`<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+
				`<text x="%d" y="%d" font-size="11" fill="#55606e">%s</text>`,
				x+pad, y+pad, w-2*pad, ph-2*pad, fill,
				x+3*pad, y+6*pad, html.EscapeString(p.title),
				x+3*pad, y+10*pad, p.kind))
			x += w
			h = max(h, ph)
		}
		y += h
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">`+"\n", 24*col, y)
	b.WriteString(`<rect width="100%" height="100%" fill="#ffffff"/>` + "\n")
	for _, box := range boxes {
		b.WriteString(box + "\n")
	}
	b.WriteString("</svg>\n")
	return b.String()
}
