// Executes the workflow's state machines locally (localsfn.mjs on
// aws-local-stepfunctions), each Lambda task backed by the real Go handler
// (`d1backup step <name>`, or the built bootstrap under the Lambda runtime
// interface emulator), with a local Step Functions API the handlers and the
// CLI talk to.
//
//   node simulate.mjs --step-bin path/to/d1backup (--machine NAME | --definition FILE)
//        [--input JSON] [--wait-ms N] [--wait STATE=MS] [--retry-ms N] [--subst Name=Value]
//        [--stub NAME=FILE] [--rie DIR]
//     runs one execution to its end and prints one JSON object:
//     {"status","output","error","cause","execution_arn","events",
//      "transitions","max_payload_bytes","path":[states entered],
//      "machines":{NAME:{...}}}
//
//   node simulate.mjs serve --step-bin path/to/d1backup [...same options]
//     serves the Step Functions API on 127.0.0.1 and prints
//     {"endpoint","state_machines":{NAME:ARN}}, until stdin closes.
//
// The three definitions are read from statemachine/ (--machines-dir);
// --definition replaces the one of the same name. ${XxxFunctionArn} become
// fake Lambda ARNs named after the step (StartExportFunctionArn ->
// start-export), ${<Machine>StateMachineArn} the local state machines,
// ${MaxConcurrency} D1BACKUP_CONCURRENCY (default 4); --subst overrides.
// --stub replaces a state machine by another definition (a scale test runs
// the run and page machines for thousands of databases against a stub).
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalStepFunctions } from './localsfn.mjs';
import { stepInvoker } from './invoke.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const MACHINES = { BackupRun: 'backup-run', BackupPage: 'backup-page', BackupDatabase: 'backup-database' };
const ARN_PREFIX = 'arn:aws:lambda:us-east-1:123456789012:function:';

function parseArgs(argv) {
  const args = { subst: {}, stub: {}, waits: {}, input: '{}', machinesDir: join(here, '..', '..', 'statemachine') };
  if (argv[0] === 'serve') args.serve = argv.shift();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const pair = (into) => {
      const [k, ...v] = next().split('=');
      into[k] = v.join('=');
    };
    switch (a) {
      case '--definition': args.definition = next(); break;
      case '--machine': args.machine = next(); break;
      case '--machines-dir': args.machinesDir = next(); break;
      case '--step-bin': args.stepBin = next(); break;
      case '--rie': args.rie = next(); break;
      case '--input': args.input = next(); break;
      case '--wait-ms': args.waitMs = Number(next()); break;
      case '--wait': pair(args.waits); break;
      case '--retry-ms': args.retryMs = Number(next()); break;
      case '--subst': pair(args.subst); break;
      case '--stub': pair(args.stub); break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!args.stepBin && !args.rie) throw new Error('--step-bin (or --rie) is required');
  if (!args.serve && !args.definition && !args.machine) throw new Error('--definition or --machine is required');
  return args;
}

const kebab = (s) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const pascal = (s) => s.replace(/(^|-)([a-z])/g, (_, __, c) => c.toUpperCase());

function substitute(text, vars) {
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (m, name) => {
    if (name in vars) return vars[name];
    const fn = name.match(/^(.*)FunctionArn$/);
    if (fn) return ARN_PREFIX + kebab(fn[1]);
    throw new Error(`no value for placeholder \${${name}}; pass --subst ${name}=...`);
  });
}

function machineFiles(args) {
  const files = {};
  for (const [name, file] of Object.entries(MACHINES)) files[name] = join(args.machinesDir, `${file}.asl.json`);
  if (args.definition) {
    args.machine = pascal(basename(args.definition).replace(/\.asl\.json$/, ''));
    files[args.machine] = args.definition;
  }
  Object.assign(files, args.stub);
  return files;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const invoker = await stepInvoker({ stepBin: args.stepBin, rie: args.rie, arnPrefix: ARN_PREFIX });
  const sfn = new LocalStepFunctions({ invokeLambda: invoker.invoke, waitMs: args.waitMs, waits: args.waits, retryMs: args.retryMs });
  const server = await sfn.listen();
  const endpoint = `http://127.0.0.1:${server.address().port}`;
  invoker.setEnv({
    AWS_ENDPOINT_URL_SFN: endpoint, AWS_REGION: sfn.region,
    AWS_ACCESS_KEY_ID: 'simulation', AWS_SECRET_ACCESS_KEY: 'simulation',
    AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
  });
  const vars = { MaxConcurrency: process.env.D1BACKUP_CONCURRENCY || '4' };
  for (const name of Object.keys(MACHINES)) vars[`${name}StateMachineArn`] = sfn.stateMachineArn(name);
  Object.assign(vars, args.subst);
  const arns = {};
  for (const [name, file] of Object.entries(machineFiles(args))) {
    arns[name] = sfn.register(name, JSON.parse(substitute(readFileSync(file, 'utf8'), vars)));
  }

  if (args.serve) {
    process.stdout.write(JSON.stringify({ endpoint, state_machines: arns }) + '\n');
    process.stdin.resume();
    await new Promise((resolve) => { process.stdin.on('end', resolve); process.on('SIGTERM', resolve); });
    server.close();
    await invoker.close();
    return;
  }

  const { executionArn } = sfn.startExecution({ stateMachineArn: arns[args.machine], input: args.input });
  const exec = await sfn.waitFor(executionArn);
  const report = {
    status: exec.status, execution_arn: exec.arn, ...sfn.stats(exec.arn),
    path: exec.events.filter((e) => e.stateEnteredEventDetails).map((e) => e.stateEnteredEventDetails.name),
    machines: machineStats(sfn),
  };
  if (exec.status === 'SUCCEEDED') report.output = JSON.parse(exec.output);
  else Object.assign(report, { error: exec.error, cause: exec.cause });
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exitCode = exec.status === 'SUCCEEDED' ? 0 : 1;
  server.close();
  await invoker.close();
}

// machineStats sums up every execution per state machine: how many ran,
// their events and transitions, and the largest history, transitions and
// payload among them.
function machineStats(sfn) {
  const out = {};
  for (const e of sfn.executions.values()) {
    const name = sfn.machines.get(e.stateMachineArn).name;
    const s = (out[name] ??= { executions: 0, events: 0, transitions: 0, max_events: 0, max_transitions: 0, max_payload_bytes: 0 });
    s.executions++;
    s.events += e.events.length;
    s.transitions += e.transitions;
    s.max_events = Math.max(s.max_events, e.events.length);
    s.max_transitions = Math.max(s.max_transitions, e.transitions);
    s.max_payload_bytes = Math.max(s.max_payload_bytes, e.maxPayload);
  }
  return out;
}

main().catch((err) => {
  process.stderr.write(`simulate: ${err.message}\n`);
  process.exitCode = 2;
});
