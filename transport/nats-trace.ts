import { context, propagation, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

const setter: TextMapSetter<MsgHdrs> = { set: (carrier, key, value) => carrier.set(key, value) };
const getter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => carrier?.keys() ?? [],
  // W3C keys are lower case on both sides, so the exact-case NATS lookup finds them.
  get: (carrier, key) => (carrier?.has(key) ? carrier.get(key) : undefined),
};

/**
 * NATS headers carrying the active trace context (W3C `traceparent`/`tracestate`), or undefined when
 * there is nothing to carry: with tracing off, requests stay exactly as they were.
 */
export function traceHeaders(ctx: Context = context.active()): MsgHdrs | undefined {
  const h = natsHeaders();
  propagation.inject(ctx, h, setter);
  return h.keys().length > 0 ? h : undefined;
}

/** The trace context a request came with (the active context when it carries none). */
export function contextFromHeaders(h: MsgHdrs | undefined): Context {
  return propagation.extract(context.active(), h, getter);
}
