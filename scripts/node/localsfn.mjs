// A local Step Functions for the simulation: it runs the workflow's state
// machines with aws-local-stepfunctions and serves the parts of the Step
// Functions API the workflow and the CLI use (StartExecution,
// DescribeExecution, RedriveExecution, ListExecutions, GetExecutionHistory)
// over the awsJson1_0 protocol, so the Go handlers and `d1backup redrive`
// talk to it as they would to AWS.
//
// What it models, from AWS's documented semantics:
// - startExecution.sync:2 Task states start a child execution and wait for
//   it; the child's failure is States.TaskFailed (cause: the child's
//   DescribeExecution as JSON); a name already used is
//   StepFunctions.ExecutionAlreadyExistsException, except that starting a
//   RUNNING execution again with the same input returns it (StartExecution
//   is idempotent for Standard workflows).
// - Redrive reruns the state that was entered and never exited, with the
//   input it had, with $$.Execution.RedriveCount + 1 and RedriveTime set.
//   (AWS reruns only the failed iterations of a failed Map; here a failed
//   Map reruns whole. The workflow's Maps never fail: their iterations
//   catch every error.)
// - The history counts events the way AWS does for each state type (Task:
//   entered, scheduled, started, [submitted,] succeeded/failed, exited;
//   Map: entered, started, per iteration started/succeeded, succeeded,
//   exited; ...), and state transitions the way AWS bills them (every state
//   entered, every retry, every redrive).
import http from 'node:http';
import { StateMachine, ExecutionError } from 'aws-local-stepfunctions';

const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']);
const REDRIVABLE = new Set(['FAILED', 'TIMED_OUT', 'ABORTED']);

class APIError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

const bytes = (v) => (v === undefined ? 0 : Buffer.byteLength(typeof v === 'string' ? v : JSON.stringify(v)));
const tick = () => new Promise((resolve) => setImmediate(resolve));

export class LocalStepFunctions {
  // invokeLambda(functionArn, payload) resolves to the function's output or
  // rejects with an Error named after the Lambda errorType. waitMs shortens
  // every Wait state to so many milliseconds, waits[state] one of them;
  // retryMs every Retry's pause.
  constructor({ invokeLambda, waitMs, waits = {}, retryMs, region = 'us-east-1', account = '123456789012' }) {
    this.invokeLambda = invokeLambda;
    this.waitMs = waitMs;
    this.waits = waits;
    this.retryMs = retryMs;
    this.region = region;
    this.account = account;
    this.machines = new Map(); // arn -> {name, definition}
    this.executions = new Map(); // arn -> execution
    this.order = []; // execution ARNs, oldest first
  }

  stateMachineArn(name) {
    return `arn:aws:states:${this.region}:${this.account}:stateMachine:${name}`;
  }

  register(name, definition) {
    const arn = this.stateMachineArn(name);
    new StateMachine(definition, { validationOptions: { checkArn: false } }); // validates
    this.machines.set(arn, { name, definition });
    return arn;
  }

  // --- the API ---

  startExecution({ stateMachineArn, name, input = '{}' }) {
    const machine = this.machines.get(stateMachineArn);
    if (!machine) throw new APIError('StateMachineDoesNotExist', `state machine ${stateMachineArn} does not exist`);
    name ??= crypto.randomUUID();
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) throw new APIError('InvalidName', `invalid execution name ${name}`);
    const arn = `arn:aws:states:${this.region}:${this.account}:execution:${machine.name}:${name}`;
    const existing = this.executions.get(arn);
    if (existing) {
      if (existing.status === 'RUNNING' && existing.input === input) return { executionArn: arn, startDate: existing.startDate };
      throw new APIError('ExecutionAlreadyExists', `execution ${arn} already exists`);
    }
    const exec = {
      arn, name, stateMachineArn, input, status: 'RUNNING', startDate: Date.now() / 1000,
      redriveCount: 0, events: [], transitions: 0, maxPayload: bytes(input), waiters: [], pending: null,
    };
    this.executions.set(arn, exec);
    this.order.push(arn);
    this.event(exec, 'ExecutionStarted', { executionStartedEventDetails: { input } });
    this.attempt(exec, machine.definition.StartAt, JSON.parse(input));
    return { executionArn: arn, startDate: exec.startDate };
  }

  redriveExecution({ executionArn }) {
    const exec = this.get(executionArn);
    if (!REDRIVABLE.has(exec.status) || !exec.pending) {
      throw new APIError('ExecutionNotRedrivable', `execution ${executionArn} is ${exec.status}: only a failed, timed out or aborted execution can be redriven`);
    }
    exec.status = 'RUNNING';
    exec.redriveCount++;
    exec.redriveDate = Date.now() / 1000;
    exec.transitions++;
    delete exec.stopDate;
    delete exec.error;
    delete exec.cause;
    this.event(exec, 'ExecutionRedriven', { executionRedrivenEventDetails: { redriveCount: exec.redriveCount } });
    const { name, input } = exec.pending;
    this.attempt(exec, name, input);
    return { redriveDate: exec.redriveDate };
  }

  describeExecution({ executionArn }) {
    const e = this.get(executionArn);
    return {
      executionArn: e.arn, stateMachineArn: e.stateMachineArn, name: e.name, status: e.status,
      startDate: e.startDate, stopDate: e.stopDate, input: e.input, output: e.output,
      error: e.error, cause: e.cause, redriveCount: e.redriveCount, redriveDate: e.redriveDate,
      redriveStatus: REDRIVABLE.has(e.status) ? 'REDRIVABLE' : 'NOT_REDRIVABLE',
    };
  }

  listExecutions({ stateMachineArn, statusFilter, maxResults = 100, nextToken }) {
    const all = this.order.map((a) => this.executions.get(a)).reverse()
      .filter((e) => e.stateMachineArn === stateMachineArn && (!statusFilter || e.status === statusFilter));
    const from = Number(nextToken ?? 0);
    const page = all.slice(from, from + (maxResults || 100));
    return {
      executions: page.map((e) => ({
        executionArn: e.arn, stateMachineArn: e.stateMachineArn, name: e.name, status: e.status,
        startDate: e.startDate, stopDate: e.stopDate, redriveCount: e.redriveCount, redriveDate: e.redriveDate,
      })),
      nextToken: from + page.length < all.length ? String(from + page.length) : undefined,
    };
  }

  getExecutionHistory({ executionArn, reverseOrder, maxResults = 100, nextToken }) {
    const events = [...this.get(executionArn).events];
    if (reverseOrder) events.reverse();
    const from = Number(nextToken ?? 0);
    const page = events.slice(from, from + (maxResults || 100));
    return { events: page, nextToken: from + page.length < events.length ? String(from + page.length) : undefined };
  }

  // --- helpers for the simulation and tests ---

  get(arn) {
    const e = this.executions.get(arn);
    if (!e) throw new APIError('ExecutionDoesNotExist', `execution ${arn} does not exist`);
    return e;
  }

  // waitFor resolves when the execution is next in a terminal status.
  waitFor(arn) {
    const e = this.get(arn);
    if (TERMINAL.has(e.status)) return Promise.resolve(e);
    return new Promise((resolve) => e.waiters.push(resolve));
  }

  stats(arn) {
    const e = this.get(arn);
    return { events: e.events.length, transitions: e.transitions, max_payload_bytes: e.maxPayload };
  }

  // --- running ---

  event(exec, type, details = {}) {
    exec.events.push({ id: exec.events.length + 1, timestamp: Date.now() / 1000, type, ...details });
  }

  attempt(exec, startAt, input) {
    const { definition } = this.machines.get(exec.stateMachineArn);
    const def = { ...definition, StartAt: startAt };
    // Node's timers stop at 24.8 days; a longer execution timeout is none.
    if (def.TimeoutSeconds > 2147483) delete def.TimeoutSeconds;
    const machine = new StateMachine(def, { validationOptions: { noValidate: true } });
    const context = {
      Execution: {
        Id: exec.arn, Name: exec.name, RedriveCount: exec.redriveCount,
        ...(exec.redriveDate ? { RedriveTime: new Date(exec.redriveDate * 1000).toISOString() } : {}),
      },
      StateMachine: { Id: exec.stateMachineArn, Name: this.machines.get(exec.stateMachineArn).name },
    };
    const run = machine.run(input, { overrides: this.overrides(exec, definition), context });
    const logged = this.record(exec, run.eventLogs);
    run.result.then(
      async (output) => {
        await logged;
        this.close(exec, 'SUCCEEDED', { output: JSON.stringify(output) });
      },
      async (err) => {
        await logged;
        const c = err instanceof ExecutionError ? (err.cause ?? err) : err;
        const timedOut = c?.constructor?.name === 'ExecutionTimeoutError';
        this.close(exec, timedOut ? 'TIMED_OUT' : 'FAILED', { error: c?.name ?? 'States.Runtime', cause: String(c?.message ?? c) });
      },
    );
  }

  close(exec, status, fields) {
    Object.assign(exec, { status, stopDate: Date.now() / 1000 }, fields);
    this.event(exec, status === 'SUCCEEDED' ? 'ExecutionSucceeded' : status === 'TIMED_OUT' ? 'ExecutionTimedOut' : 'ExecutionFailed',
      status === 'SUCCEEDED' ? { executionSucceededEventDetails: { output: fields.output } } : { executionFailedEventDetails: { error: fields.error, cause: fields.cause } });
    const waiters = exec.waiters;
    exec.waiters = [];
    waiters.forEach((w) => w(exec));
  }

  // record turns the engine's events into AWS-shaped history events and
  // tracks the top-level state entered and not yet exited (what a redrive
  // reruns).
  async record(exec, logs) {
    for await (const ev of logs) {
      const nested = ev.index !== undefined;
      switch (ev.type) {
        case 'StateEntered':
          exec.transitions++;
          exec.maxPayload = Math.max(exec.maxPayload, bytes(ev.state.input));
          if (!nested) exec.pending = { name: ev.state.name, input: ev.state.input };
          this.event(exec, `${ev.state.type}StateEntered`, { stateEnteredEventDetails: { name: ev.state.name, input: JSON.stringify(ev.state.input) } });
          if (ev.state.type === 'Map') this.event(exec, 'MapStateStarted');
          break;
        case 'StateExited':
          exec.maxPayload = Math.max(exec.maxPayload, bytes(ev.state.output));
          if (!nested) exec.pending = null;
          if (ev.state.type === 'Map') this.event(exec, 'MapStateSucceeded');
          this.event(exec, `${ev.state.type}StateExited`, { stateExitedEventDetails: { name: ev.state.name, output: JSON.stringify(ev.state.output) } });
          break;
        case 'StateRetried':
          exec.transitions++;
          break;
        case 'StateFailed':
          if (ev.state.type === 'Map') this.event(exec, 'MapStateFailed');
          break;
        case 'MapIterationStarted':
        case 'MapIterationSucceeded':
        case 'MapIterationFailed':
          this.event(exec, ev.type, { [`${ev.type[0].toLowerCase()}${ev.type.slice(1)}EventDetails`]: { name: ev.parentState.name, index: ev.index } });
          break;
        default:
      }
    }
  }

  overrides(exec, definition) {
    const handlers = {};
    const waits = {};
    const retries = {};
    const visit = (states) => {
      for (const [name, state] of Object.entries(states)) {
        if (state.Type === 'Wait' && name in this.waits) waits[name] = Number(this.waits[name]);
        else if (state.Type === 'Wait' && this.waitMs !== undefined) waits[name] = this.waitMs;
        if (state.Retry && this.retryMs !== undefined) retries[name] = this.retryMs;
        if (state.Type === 'Task') handlers[name] = this.taskHandler(exec, state);
        const inner = state.ItemProcessor ?? state.Iterator;
        if (inner) visit(inner.States);
      }
    };
    visit(definition.States);
    return { taskResourceLocalHandlers: handlers, waitTimeOverrides: waits, retryIntervalOverrides: retries };
  }

  taskHandler(exec, state) {
    const resource = state.Resource;
    return async (params) => {
      // Let the engine's StateEntered reach the history first.
      await tick();
      const [resourceType, action] = resource.startsWith('arn:aws:states:::') ? resource.slice(17).split(':') : ['lambda', 'invoke'];
      this.event(exec, 'TaskScheduled', { taskScheduledEventDetails: { resourceType, resource: action, region: this.region, parameters: JSON.stringify(params) } });
      this.event(exec, 'TaskStarted', { taskStartedEventDetails: { resourceType, resource: action } });
      exec.maxPayload = Math.max(exec.maxPayload, bytes(params));
      try {
        let out;
        if (resource === 'arn:aws:states:::lambda:invoke') {
          out = { Payload: await this.invokeLambda(params.FunctionName, params.Payload) };
        } else if (resource === 'arn:aws:states:::states:startExecution.sync:2') {
          out = await this.runChild(exec, params, resourceType, action);
        } else {
          throw Object.assign(new Error(`the simulation does not run ${resource}`), { name: 'States.Runtime' });
        }
        this.event(exec, 'TaskSucceeded', { taskSucceededEventDetails: { resourceType, resource: action, output: JSON.stringify(out) } });
        exec.maxPayload = Math.max(exec.maxPayload, bytes(out));
        return out;
      } catch (err) {
        this.event(exec, 'TaskFailed', { taskFailedEventDetails: { resourceType, resource: action, error: err.name, cause: err.message } });
        throw err;
      }
    };
  }

  async runChild(exec, params, resourceType, action) {
    let started;
    try {
      started = this.startExecution({ stateMachineArn: params.StateMachineArn, name: params.Name, input: JSON.stringify(params.Input ?? {}) });
    } catch (err) {
      if (err instanceof APIError) throw Object.assign(new Error(err.message), { name: `StepFunctions.${err.type}Exception` });
      throw err;
    }
    this.event(exec, 'TaskSubmitted', { taskSubmittedEventDetails: { resourceType, resource: action } });
    const child = await this.waitFor(started.executionArn);
    const d = this.describeExecution({ executionArn: child.arn });
    if (d.status !== 'SUCCEEDED') {
      throw Object.assign(new Error(JSON.stringify({ ExecutionArn: d.executionArn, Status: d.status, Error: d.error, Cause: d.cause })), { name: 'States.TaskFailed' });
    }
    return {
      ExecutionArn: d.executionArn, Name: d.name, StateMachineArn: d.stateMachineArn, Status: d.status,
      StartDate: d.startDate, StopDate: d.stopDate, Input: JSON.parse(d.input), Output: JSON.parse(d.output),
    };
  }

  // --- the HTTP front door ---

  listen(port = 0, host = '127.0.0.1') {
    const ops = {
      StartExecution: (b) => this.startExecution(b),
      DescribeExecution: (b) => this.describeExecution(b),
      RedriveExecution: (b) => this.redriveExecution(b),
      ListExecutions: (b) => this.listExecutions(b),
      GetExecutionHistory: (b) => this.getExecutionHistory(b),
    };
    const control = {
      '/__wait': async (b) => this.describeExecution({ executionArn: (await this.waitFor(b.executionArn)).arn }),
    };
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', async () => {
        const reply = (status, v) => {
          res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.0' });
          res.end(JSON.stringify(v ?? {}));
        };
        try {
          const b = body ? JSON.parse(body) : {};
          if (control[req.url]) return reply(200, await control[req.url](b));
          const op = String(req.headers['x-amz-target'] ?? '').replace(/^AWSStepFunctions\./, '');
          if (!ops[op]) return reply(400, { __type: 'UnknownOperationException', message: `the simulation does not serve ${op}` });
          return reply(200, ops[op](b));
        } catch (err) {
          if (err instanceof APIError) return reply(400, { __type: err.type, message: err.message });
          return reply(500, { __type: 'InternalServerError', message: err.message });
        }
      });
    });
    return new Promise((resolve) => server.listen(port, host, () => resolve(server)));
  }
}
