// Invokes the workflow's Lambda functions for the simulation, one of two
// ways:
// - step-bin: `d1backup step <name>` per invocation, the payload on stdin;
//   it prints the output, or {"errorType","errorMessage"} and exits 1.
// - rie: the built bootstrap of each function (DIR/<name>/bootstrap, from
//   scripts/build-lambdas) under the Lambda runtime interface emulator
//   (aws-lambda-rie on PATH), invoked over its HTTP invoke API; a returned
//   Go error comes back as {"errorType","errorMessage"}, a crash as a 5xx.
//   RIE serves one invocation at a time, so each function gets a small
//   pool of emulators, started on first use.
// Either way a failure rejects with an Error whose name is the Lambda
// errorType (Lambda.Unknown when there is none), which is what the state
// machine's Retry and Catch match.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';

const POOL = 4;

function lambdaError(name, message) {
  return Object.assign(new Error(message), { name });
}

function parseResult(text, failed) {
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw lambdaError('Lambda.Unknown', `the function returned no JSON: ${text.slice(0, 200)}`);
  }
  if (failed || (parsed && typeof parsed === 'object' && 'errorType' in parsed && 'errorMessage' in parsed && Object.keys(parsed).length <= 3)) {
    throw lambdaError(parsed?.errorType ?? 'Lambda.Unknown', parsed?.errorMessage ?? text);
  }
  return parsed;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function stepInvoker({ stepBin, rie, arnPrefix }) {
  let extraEnv = {};
  const env = () => ({ ...process.env, ...extraEnv });
  const stepOf = (arn) => {
    if (typeof arn !== 'string' || !arn.startsWith(arnPrefix)) throw lambdaError('Lambda.ResourceNotFoundException', `unknown function ${arn}`);
    return arn.slice(arnPrefix.length).split(':')[0];
  };

  if (!rie) {
    return {
      setEnv: (e) => { extraEnv = e; },
      close: async () => {},
      invoke: (arn, payload) => new Promise((resolve, reject) => {
        const child = spawn(stepBin, ['step', stepOf(arn)], { stdio: ['pipe', 'pipe', 'inherit'], env: env() });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        child.on('error', reject);
        child.on('close', (code) => {
          try {
            resolve(parseResult(out, code !== 0));
          } catch (err) {
            reject(err);
          }
        });
        child.stdin.end(JSON.stringify(payload ?? null));
      }),
    };
  }

  const pools = new Map(); // step -> {idle: [], waiting: [], started: n}
  const procs = [];
  async function startEmulator(step) {
    const [apiPort, rapidPort] = [await freePort(), await freePort()];
    const proc = spawn('aws-lambda-rie', [
      '--runtime-interface-emulator-address', `127.0.0.1:${apiPort}`,
      '--runtime-api-address', `127.0.0.1:${rapidPort}`,
      join(rie, step, 'bootstrap'),
    ], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...env(), AWS_LAMBDA_FUNCTION_NAME: step, AWS_LAMBDA_FUNCTION_TIMEOUT: '900' } });
    procs.push(proc);
    const url = `http://127.0.0.1:${apiPort}/2015-03-31/functions/function/invocations`;
    for (let i = 0; i < 100; i++) {
      try {
        await fetch(`http://127.0.0.1:${apiPort}/`, { method: 'GET' });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return url;
  }
  async function acquire(step) {
    const pool = pools.get(step) ?? { idle: [], waiting: [], started: 0 };
    pools.set(step, pool);
    if (pool.idle.length) return pool.idle.pop();
    if (pool.started < POOL) {
      pool.started++;
      return startEmulator(step);
    }
    return new Promise((resolve) => pool.waiting.push(resolve));
  }
  function release(step, url) {
    const pool = pools.get(step);
    const next = pool.waiting.shift();
    if (next) next(url);
    else pool.idle.push(url);
  }
  return {
    setEnv: (e) => { extraEnv = e; },
    close: async () => { procs.forEach((p) => p.kill('SIGTERM')); },
    invoke: async (arn, payload) => {
      const step = stepOf(arn);
      const url = await acquire(step);
      try {
        const res = await fetch(url, { method: 'POST', body: JSON.stringify(payload ?? null) });
        const text = await res.text();
        if (res.status >= 500) throw lambdaError('Lambda.Unknown', `the function crashed (HTTP ${res.status}): ${text.slice(0, 200)}`);
        return parseResult(text, false);
      } finally {
        release(step, url);
      }
    },
  };
}
