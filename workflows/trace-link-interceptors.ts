/**
 * With tracing on: makes each host operation part of the trace of whoever asked for it. The host
 * entity runs for hours and starts operations from its main loop, so by default a child would hang
 * under the entity's own (never-ending) run span, in the trace of the entity's first caller. Here the
 * entity remembers the trace context each `enqueue-operation` signal came with and starts that
 * operation's child under it. Headers are not part of determinism, so this replays the same with or
 * without the module. Listed before the OpenTelemetry module, so it is the outer interceptor.
 */
import { ROOT_CONTEXT, context, propagation, type Context } from '@opentelemetry/api';
import { defaultPayloadConverter, type WorkflowInterceptors } from '@temporalio/workflow';
import { enqueueOperationSignal } from './definitions.js';

/** The header the OpenTelemetry interceptors carry the context in (@temporalio/interceptors-opentelemetry). */
const TRACE_HEADER = '_tracer-data';

export const interceptors = (): WorkflowInterceptors => {
  const requested = new Map<string, Context>();
  return {
    inbound: [
      {
        async handleSignal(input, next) {
          const workflowId = (input.args[0] as { workflowId?: unknown } | undefined)?.workflowId;
          const header = input.headers[TRACE_HEADER];
          if (input.signalName === enqueueOperationSignal.name && typeof workflowId === 'string' && header) {
            const carrier = defaultPayloadConverter.fromPayload<Record<string, string>>(header);
            requested.set(workflowId, propagation.extract(ROOT_CONTEXT, carrier));
          }
          return next(input);
        },
      },
    ],
    outbound: [
      {
        async startChildWorkflowExecution(input, next) {
          const ctx = requested.get(input.options.workflowId);
          if (!ctx) return next(input);
          requested.delete(input.options.workflowId);
          return context.with(ctx, () => next(input));
        },
      },
    ],
  };
};
