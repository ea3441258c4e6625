package main

import (
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsstepfunctions"
	"github.com/aws/jsii-runtime-go"

	"github.com/d1backup/d1backup/internal/config"
	"github.com/d1backup/d1backup/internal/step"
)

// panel is one widget of the dashboard: its place in the layout (which
// docs/dashboard.svg draws, see TestDashboardPicture) and how to build it.
type panel struct {
	title  string
	kind   string // text, log table, graph, number
	width  int    // of the dashboard's 24 columns
	height int
	widget func(d dashboardSources, p panel) awscloudwatch.IWidget
}

// dashboardSources are what the widgets read: the functions' log groups
// (the Embedded Metric Format lines, one per backup, carry the database's
// name and UUID, which the metrics do not for an account of thousands of
// databases) and the state machines' and functions' own metrics.
type dashboardSources struct {
	fns      map[string]awslambda.Function
	machines map[string]awsstepfunctions.StateMachine
}

func (d dashboardSources) logs(states ...string) *[]*string {
	var names []*string
	for _, s := range states {
		names = append(names, d.fns[s].LogGroup().LogGroupName())
	}
	return &names
}

// dashboardDays is the dashboard's time range: the log tables list the
// databases backed up in it (the functions' logs are kept a month).
const dashboardDays = 14

// dashboardRows is the dashboard, row by row. It reads well with one
// database or 50,000: per-database panels are top-N tables from the logs,
// everything else is account totals.
func dashboardRows() [][]panel {
	num := func(m awscloudwatch.IMetric) *[]awscloudwatch.IMetric { return &[]awscloudwatch.IMetric{m} }
	d1 := func(name, stat string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String(config.MetricNamespace), MetricName: jsii.String(name),
			Statistic: jsii.String(stat), Period: awscdk.Duration_Days(jsii.Number(1)),
		})
	}
	logTable := func(query string, states ...string) func(dashboardSources, panel) awscloudwatch.IWidget {
		return func(d dashboardSources, p panel) awscloudwatch.IWidget {
			return awscloudwatch.NewLogQueryWidget(&awscloudwatch.LogQueryWidgetProps{
				Title: jsii.String(p.title), LogGroupNames: d.logs(states...), QueryString: jsii.String(query),
				View: awscloudwatch.LogQueryVisualizationType_TABLE, Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height)),
			})
		}
	}
	graph := func(left ...awscloudwatch.IMetric) func(dashboardSources, panel) awscloudwatch.IWidget {
		return func(_ dashboardSources, p panel) awscloudwatch.IWidget {
			return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
				Title: jsii.String(p.title), Left: &left, Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height)),
			})
		}
	}
	stored := []string{"StoreDump", "QueryDump"}
	return [][]panel{
		{
			{title: "d1backup", kind: "text", width: 24, height: 2, widget: func(_ dashboardSources, p panel) awscloudwatch.IWidget {
				return awscloudwatch.NewTextWidget(&awscloudwatch.TextWidgetProps{
					Markdown: jsii.String("# d1backup\nBackups of the last " + strconv.Itoa(dashboardDays) + " days, from the functions' logs and metrics. " +
						"The authoritative answer per database, stale and never-backed-up ones included, is `d1backup status` (it reads the manifests)."),
					Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height)),
				})
			}},
		},
		{
			{title: "Verified backups, last 24 h", kind: "number", width: 6, height: 4, widget: func(_ dashboardSources, p panel) awscloudwatch.IWidget {
				return awscloudwatch.NewSingleValueWidget(&awscloudwatch.SingleValueWidgetProps{Title: jsii.String(p.title),
					Metrics: num(d1(config.MetricBackupSucceeded, "Sum")), Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height))})
			}},
			{title: "Failed executions, last 24 h", kind: "number", width: 6, height: 4, widget: func(d dashboardSources, p panel) awscloudwatch.IWidget {
				per := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Days(jsii.Number(1)), Statistic: jsii.String("Sum")}
				return awscloudwatch.NewSingleValueWidget(&awscloudwatch.SingleValueWidgetProps{Title: jsii.String(p.title),
					Metrics: &[]awscloudwatch.IMetric{d.machines[step.MachineRun].MetricFailed(per), d.machines[step.MachineDatabase].MetricFailed(per)},
					Width:   jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height))})
			}},
			{title: "Databases backed up (by the day)", kind: "log table", width: 12, height: 4,
				widget: logTable("filter BackupSucceeded = 1 | stats count_distinct(DatabaseId) as databases by bin(1d) as day | sort day desc", "VerifyBackup")},
		},
		{
			{title: "Oldest last verified backup (top 25)", kind: "log table", width: 12, height: 8,
				widget: logTable("filter BackupSucceeded = 1 | stats max(@timestamp) as last_verified by Database, DatabaseId | sort last_verified asc | limit 25", "VerifyBackup")},
			{title: "Largest dumps (top 10)", kind: "log table", width: 12, height: 8,
				widget: logTable("filter ispresent(DumpBytes) | stats max(DumpBytes) as sql_bytes, max(StoredBytes) as stored_bytes by Database | sort sql_bytes desc | limit 10", stored...)},
		},
		{
			{title: "Dump and stored bytes per day", kind: "graph", width: 8, height: 6,
				widget: graph(d1(config.MetricDumpBytes, "Sum"), d1(config.MetricStoredBytes, "Sum"))},
			{title: "Backup duration and blocked time (s)", kind: "graph", width: 8, height: 6,
				widget: graph(d1(config.MetricDuration, "p50"), d1(config.MetricDuration, "Maximum"), d1(config.MetricBlocked, "Maximum"))},
			{title: "Longest blocked by an export (top 10)", kind: "log table", width: 8, height: 6,
				widget: logTable("filter ispresent(BlockedSeconds) | stats max(BlockedSeconds) as blocked_seconds by Database | sort blocked_seconds desc | limit 10", stored...)},
		},
		{
			{title: "Executions: failed, timed out, throttled", kind: "graph", width: 12, height: 6, widget: func(d dashboardSources, p panel) awscloudwatch.IWidget {
				per := &awscloudwatch.MetricOptions{Period: awscdk.Duration_Hours(jsii.Number(1)), Statistic: jsii.String("Sum")}
				var ms []awscloudwatch.IMetric
				for _, name := range []string{step.MachineRun, step.MachinePage, step.MachineDatabase} {
					m := d.machines[name]
					ms = append(ms, m.MetricFailed(per), m.MetricTimedOut(per), m.MetricThrottled(per))
				}
				return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String(p.title), Left: &ms,
					Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height))})
			}},
			{title: "Rate limits waited out; Lambda errors, throttles", kind: "graph", width: 12, height: 6, widget: func(d dashboardSources, p panel) awscloudwatch.IWidget {
				hour := awscdk.Duration_Hours(jsii.Number(1))
				ms := []awscloudwatch.IMetric{awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
					Namespace: jsii.String(config.MetricNamespace), MetricName: jsii.String(config.MetricRateLimited),
					Statistic: jsii.String("Sum"), Period: hour,
				})}
				var errs, throttles []awscloudwatch.IMetric
				for _, s := range step.Registry {
					errs = append(errs, d.fns[s.State].MetricErrors(&awscloudwatch.MetricOptions{Period: hour, Statistic: jsii.String("Sum")}))
					throttles = append(throttles, d.fns[s.State].MetricThrottles(&awscloudwatch.MetricOptions{Period: hour, Statistic: jsii.String("Sum")}))
				}
				// One line each: the sums over every function, so the
				// graph does not grow with the registry.
				ms = append(ms, sumOf("lambda_errors", "Lambda errors", errs), sumOf("lambda_throttles", "Lambda throttles", throttles))
				return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{Title: jsii.String(p.title), Left: &ms,
					Width: jsii.Number(float64(p.width)), Height: jsii.Number(float64(p.height))})
			}},
		},
	}
}

// sumOf is one line on a graph: the sum of metrics, by metric math.
func sumOf(id, label string, ms []awscloudwatch.IMetric) awscloudwatch.IMetric {
	using := map[string]awscloudwatch.IMetric{}
	expr := ""
	for i, m := range ms {
		name := id + "_" + strconv.Itoa(i)
		using[name] = m
		if expr != "" {
			expr += "+"
		}
		expr += "FILL(" + name + ",0)"
	}
	return awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
		Expression: jsii.String(expr), UsingMetrics: &using, Label: jsii.String(label), Period: awscdk.Duration_Hours(jsii.Number(1)),
	})
}

// dashboard creates the CloudWatch dashboard and returns its console URL.
func dashboard(stack awscdk.Stack, fns map[string]awslambda.Function, machines map[string]awsstepfunctions.StateMachine) *string {
	src := dashboardSources{fns: fns, machines: machines}
	var rows []*[]awscloudwatch.IWidget
	for _, r := range dashboardRows() {
		var row []awscloudwatch.IWidget
		for _, p := range r {
			row = append(row, p.widget(src, p))
		}
		rows = append(rows, &row)
	}
	name := awscdk.Fn_Join(jsii.String("-"), &[]*string{stack.StackName(), jsii.String("backups")})
	awscloudwatch.NewDashboard(stack, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DashboardName:   name,
		DefaultInterval: awscdk.Duration_Days(jsii.Number(dashboardDays)),
		Widgets:         &rows,
	})
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("https://console.aws.amazon.com/cloudwatch/home?region="), stack.Region(), jsii.String("#dashboards:name="), name,
	})
}
