import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { HOSTS_BUCKET, type AgentCommand, type CommandArgsInput, type CommandResultOf } from '../schemas/agent-protocol.js';
import { ErrorCode, PtcError, isPermanent } from '../schemas/errors.js';
import { HostInventory } from '../schemas/inventory.js';
import type { AttachMode } from '../schemas/passthrough.js';
import { type AgentCallObserver, AgentClient } from '../transport/agent-client.js';

/** An agent result plus the boot id of the host when it answered. */
export type WithBoot<T> = T & { bootId: string };

/** Told how each host step and reboot wait went; `result` is `ok` or an error code (bounded: no ids). */
export interface StepObserver extends AgentCallObserver {
  stepEnded(command: AgentCommand, compensation: boolean, result: string, seconds: number): void;
  rebootWaitEnded(result: string, seconds: number): void;
}

export interface ActivityDeps {
  nc: NatsConnection;
  /** How long one agent command may take before the call counts as timed out. */
  agentTimeoutMs?: number;
  /** Metrics of the steps (the worker's registry); none in tests that do not look. */
  observer?: StepObserver;
  /** Who asked for the workflow an activity runs in (its input's `requestedBy`), for the agent's audit events. */
  requesterOf?: (workflow: { workflowId: string; runId: string }) => Promise<string | undefined>;
}

/** The saga names its undo steps' op ids `…#undo-<step>` (saga-kit / the workflows). */
const isCompensation = (opId: string): boolean => opId.slice(opId.lastIndexOf('#') + 1).startsWith('undo-');

/** A PtcError becomes an ApplicationFailure whose type is the error code, retryable only when a retry can help. */
export function toFailure(err: unknown): unknown {
  if (err instanceof PtcError) {
    return ApplicationFailure.create({ type: err.code, message: err.message, nonRetryable: isPermanent(err.code), cause: err });
  }
  return err;
}

/**
 * The worker's side effects, each one agent command over NATS. Every effect carries an operation id
 * derived from the workflow id and the step, so a Temporal retry of the same step is answered from the
 * agent's journal instead of being done twice.
 */
export function createActivities(deps: ActivityDeps) {
  const agents = new AgentClient(deps.nc, deps.observer);
  const observer = deps.observer;
  const timeoutMs = deps.agentTimeoutMs ?? 30_000;

  // Each result carries the boot id the agent answered under, so the saga notices an unexpected reboot.
  async function call<C extends AgentCommand>(hostId: string, command: C, args: CommandArgsInput<C>, opId: string): Promise<WithBoot<CommandResultOf<C>>> {
    const started = performance.now();
    let outcome = 'ok';
    try {
      const workflow = deps.requesterOf ? Context.current().info.workflowExecution : undefined;
      const requestedBy = deps.requesterOf && workflow ? await deps.requesterOf(workflow) : undefined;
      const { result, bootId } = await agents.call(hostId, command, args, { opId, timeoutMs, ...(requestedBy ? { requestedBy } : {}) });
      return { ...result, bootId };
    } catch (err) {
      outcome = err instanceof PtcError ? err.code : ErrorCode.INTERNAL;
      throw toFailure(err);
    } finally {
      observer?.stepEnded(command, isCompensation(opId), outcome, (performance.now() - started) / 1000);
    }
  }

  return {
    async inspectHost(hostId: string, opId: string): Promise<HostInventory> {
      return call(hostId, 'inspect', {}, opId);
    },
    async hideDevice(hostId: string, bdf: string, opId: string): Promise<WithBoot<CommandResultOf<'hide'>>> {
      return call(hostId, 'hide', { bdf }, opId);
    },
    async unhideDevice(hostId: string, bdf: string, opId: string): Promise<WithBoot<CommandResultOf<'unhide'>>> {
      return call(hostId, 'unhide', { bdf }, opId);
    },
    async bindDevice(hostId: string, bdf: string, strategy: 'dynamic' | 'reload', opId: string): Promise<WithBoot<CommandResultOf<'bind'>>> {
      return call(hostId, 'bind', { bdf, strategy }, opId);
    },
    async unbindDevice(hostId: string, bdf: string, driver: string | null, opId: string): Promise<WithBoot<CommandResultOf<'unbind'>>> {
      return call(hostId, 'unbind', { bdf, driver }, opId);
    },
    async rebootHost(hostId: string, opId: string): Promise<WithBoot<CommandResultOf<'reboot'>>> {
      return call(hostId, 'reboot', {}, opId);
    },
    async verifyDevice(hostId: string, bdf: string, expect: 'pciback' | 'host', opId: string): Promise<WithBoot<CommandResultOf<'verify'>>> {
      return call(hostId, 'verify', { bdf, expect }, opId);
    },
    async attachDevice(hostId: string, bdf: string, guest: string, mode: AttachMode, allowInsecurePV: boolean, opId: string): Promise<WithBoot<CommandResultOf<'attach'>>> {
      return call(hostId, 'attach', { bdf, guest, mode, allowInsecurePV }, opId);
    },
    async detachDevice(hostId: string, bdf: string, guest: string, mode: AttachMode, opId: string): Promise<WithBoot<CommandResultOf<'detach'>>> {
      return call(hostId, 'detach', { bdf, guest, mode }, opId);
    },

    /**
     * Waits until the host's inventory in KV shows a boot id other than `previousBootId`, heartbeating
     * so Temporal notices a dead worker; the caller's schedule-to-close timeout is the reboot deadline.
     */
    async awaitNewBoot(hostId: string, previousBootId: string): Promise<string> {
      const kv = await new Kvm(deps.nc).open(HOSTS_BUCKET);
      const ctx = Context.current();
      const started = performance.now();
      const ended = (result: string): void => observer?.rebootWaitEnded(result, (performance.now() - started) / 1000);
      for (;;) {
        const entry = await kv.get(hostId);
        if (entry && entry.operation === 'PUT') {
          const inv = HostInventory.safeParse(entry.json());
          if (inv.success && inv.data.bootId !== previousBootId) {
            ended('ok');
            return inv.data.bootId;
          }
        }
        ctx.heartbeat({ waitingFor: 'new bootId', previousBootId });
        try {
          await ctx.sleep(500);
        } catch (err) {
          ended(ErrorCode.HOST_UNRESPONSIVE);
          throw toFailure(new PtcError(ErrorCode.HOST_UNRESPONSIVE, `host ${hostId} did not come back from its reboot`, { cause: err }));
        }
      }
    },
  };
}

export type PassthroughActivities = ReturnType<typeof createActivities>;
