import { errors, type NatsConnection } from '@nats-io/transport-node';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import {
  type AgentCommand,
  AgentReply,
  type CommandArgsInput,
  CommandArgs,
  CommandResults,
  type CommandResultOf,
  agentSubject,
} from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError, describeZodError } from '../schemas/errors.js';
import { traceHeaders } from './nats-trace.js';

export interface AgentCallOptions {
  /** Idempotency key: the agent replays its recorded reply for a repeated id. */
  opId: string;
  timeoutMs: number;
  /** The identity that asked for the operation; the agent copies it into its audit events. */
  requestedBy?: string;
}

export interface AgentCallResult<C extends AgentCommand> {
  result: CommandResultOf<C>;
  bootId: string;
}

/** Told how each request went: `result` is `ok` or the error code (bounded: no ids). */
export interface AgentCallObserver {
  requestEnded(command: AgentCommand, result: string, seconds: number): void;
}

const tracer = trace.getTracer('ptctl');

/**
 * Request/reply client for host agents. Arguments are validated before anything is sent and replies
 * are validated on arrival; every failure becomes a PtcError with a code (the agent's own code when
 * it answered, AGENT_UNREACHABLE / AGENT_TIMEOUT when it did not).
 */
export class AgentClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly observer?: AgentCallObserver,
  ) {}

  /**
   * One request in a client span whose context travels in the NATS headers, so the agent's handling
   * joins the caller's trace.
   */
  async call<C extends AgentCommand>(hostId: string, command: C, args: CommandArgsInput<C>, opts: AgentCallOptions): Promise<AgentCallResult<C>> {
    const started = performance.now();
    return tracer.startActiveSpan(`agent ${command}`, { kind: SpanKind.CLIENT, attributes: { 'ptc.host_id': hostId, 'ptc.op_id': opts.opId, 'messaging.system': 'nats', 'messaging.destination.name': agentSubject(hostId, command) } }, async (span) => {
      let result = 'ok';
      try {
        return await this.request(hostId, command, args, opts);
      } catch (err) {
        result = err instanceof PtcError ? err.code : ErrorCode.INTERNAL;
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        throw err;
      } finally {
        span.setAttribute('ptc.result', result);
        span.end();
        this.observer?.requestEnded(command, result, (performance.now() - started) / 1000);
      }
    });
  }

  private async request<C extends AgentCommand>(hostId: string, command: C, args: CommandArgsInput<C>, opts: AgentCallOptions): Promise<AgentCallResult<C>> {
    const parsedArgs = CommandArgs[command].safeParse(args);
    if (!parsedArgs.success) throw new PtcError(ErrorCode.INVALID_INPUT, `invalid ${command} arguments: ${describeZodError(parsedArgs.error, 'args')}`);
    const request = { opId: opts.opId, hostId, issuedAt: new Date().toISOString(), args: parsedArgs.data, ...(opts.requestedBy ? { requestedBy: opts.requestedBy } : {}) };
    let raw: unknown;
    try {
      const headers = traceHeaders(context.active());
      const msg = await this.nc.request(agentSubject(hostId, command), JSON.stringify(request), { timeout: opts.timeoutMs, ...(headers ? { headers } : {}) });
      raw = msg.json();
    } catch (err) {
      throw toTransportError(err, hostId, command, opts.timeoutMs);
    }
    const reply = AgentReply.safeParse(raw);
    if (!reply.success) throw new PtcError(ErrorCode.INTERNAL, `agent of ${hostId} sent a malformed reply to ${command}: ${describeZodError(reply.error, 'reply')}`);
    if (!reply.data.ok) throw PtcError.from(reply.data.error);
    const result = CommandResults[command].safeParse(reply.data.result);
    if (!result.success) throw new PtcError(ErrorCode.INTERNAL, `agent of ${hostId} sent a malformed ${command} result: ${describeZodError(result.error, 'result')}`);
    return { result: result.data as CommandResultOf<C>, bootId: reply.data.bootId };
  }
}

function toTransportError(err: unknown, hostId: string, command: string, timeoutMs: number): PtcError {
  const noResponders =
    err instanceof errors.NoRespondersError ||
    (err instanceof errors.RequestError && err.isNoResponders()) ||
    (err instanceof Error && err.cause instanceof errors.NoRespondersError);
  if (noResponders) {
    return new PtcError(ErrorCode.AGENT_UNREACHABLE, `no agent is answering for host ${hostId} (is \`ptctl agent --host-id ${hostId}\` running?)`, { cause: err });
  }
  if (err instanceof errors.TimeoutError || (err instanceof Error && err.cause instanceof errors.TimeoutError)) {
    return new PtcError(ErrorCode.AGENT_TIMEOUT, `agent of ${hostId} did not answer ${command} within ${timeoutMs} ms`, { cause: err });
  }
  return new PtcError(ErrorCode.AGENT_UNREACHABLE, `request ${command} to ${hostId} failed: ${(err as Error).message}`, { cause: err });
}
