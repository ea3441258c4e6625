// Executes a Step Functions definition locally with aws-local-stepfunctions,
// each Lambda task backed by the real Go handler (`d1backup step <name>`),
// and prints one JSON object: {"status","output","error","cause"}.
//
//   node simulate.mjs --definition file.asl.json --step-bin path/to/d1backup
//        [--input JSON] [--wait-ms N] [--retry-ms N]
//
// Placeholders ${XxxFunctionArn} become fake Lambda ARNs named after the
// step (StartExportFunctionArn -> start-export); other placeholders need
// --subst Name=Value. aws-local-stepfunctions does no substitution itself.
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { StateMachine, ExecutionError } from 'aws-local-stepfunctions';

function parseArgs(argv) {
  const args = { subst: {}, input: '{}' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--definition': args.definition = next(); break;
      case '--step-bin': args.stepBin = next(); break;
      case '--input': args.input = next(); break;
      case '--wait-ms': args.waitMs = Number(next()); break;
      case '--retry-ms': args.retryMs = Number(next()); break;
      case '--subst': {
        const [k, ...v] = next().split('=');
        args.subst[k] = v.join('=');
        break;
      }
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!args.definition || !args.stepBin) throw new Error('--definition and --step-bin are required');
  return args;
}

const kebab = (s) => s.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
const ARN_PREFIX = 'arn:aws:lambda:us-east-1:123456789012:function:';

function substitute(text, subst) {
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (m, name) => {
    if (name in subst) return subst[name];
    const fn = name.match(/^(.*)FunctionArn$/);
    if (fn) return ARN_PREFIX + kebab(fn[1]);
    throw new Error(`no value for placeholder \${${name}}; pass --subst ${name}=...`);
  });
}

// runStep pipes the payload into `d1backup step <name>` and returns its
// output, or throws an Error named after the Lambda errorType.
function runStep(bin, step, payload) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['step', step], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      let parsed;
      try {
        parsed = JSON.parse(out);
      } catch {
        const e = new Error(`step ${step} exited ${code} without JSON output`);
        e.name = 'Lambda.Unknown';
        return reject(e);
      }
      if (code === 0) return resolve(parsed);
      const e = new Error(parsed.errorMessage ?? 'unknown error');
      e.name = parsed.errorType ?? 'Lambda.Unknown';
      reject(e);
    });
    child.stdin.end(JSON.stringify(payload));
  });
}

function lambdaStep(state) {
  const arn = state.Resource === 'arn:aws:states:::lambda:invoke' ? state.Parameters?.FunctionName : state.Resource;
  if (typeof arn !== 'string' || !arn.startsWith(ARN_PREFIX)) return null;
  return { step: arn.slice(ARN_PREFIX.length).split(':')[0], invoke: state.Resource === 'arn:aws:states:::lambda:invoke' };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const definition = JSON.parse(substitute(readFileSync(args.definition, 'utf8'), args.subst));
  const handlers = {};
  const waits = {};
  const retries = {};
  for (const [name, state] of Object.entries(definition.States)) {
    if (state.Type === 'Wait' && args.waitMs !== undefined) waits[name] = args.waitMs;
    if (state.Type !== 'Task') continue;
    if (args.retryMs !== undefined && state.Retry) retries[name] = args.retryMs;
    const l = lambdaStep(state);
    if (!l) continue;
    handlers[name] = async (input) => {
      // lambda:invoke hands the function {FunctionName, Payload} and wraps
      // its result as {Payload: ...}; a plain Lambda ARN passes input as is.
      const out = await runStep(args.stepBin, l.step, l.invoke ? input.Payload : input);
      return l.invoke ? { Payload: out } : out;
    };
  }
  const machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
  const execution = machine.run(JSON.parse(args.input), {
    overrides: { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries },
  });
  let report;
  try {
    report = { status: 'SUCCEEDED', output: await execution.result };
  } catch (err) {
    if (!(err instanceof ExecutionError)) throw err;
    const c = err.cause ?? err;
    report = { status: 'FAILED', error: c.name, cause: c.message };
  }
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exitCode = report.status === 'SUCCEEDED' ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(`simulate: ${err.message}\n`);
  process.exitCode = 2;
});
