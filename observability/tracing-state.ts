import type { Resource } from '@opentelemetry/resources';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';

// Kept apart from tracing.ts so that a CLI command learns whether tracing is on without loading the
// OpenTelemetry SDK (most commands run with it off, and loading it costs every one of them).

/** Tracing of this process, when the environment turned it on. */
export interface Tracing {
  readonly resource: Resource;
  readonly spanProcessor: SpanProcessor;
  /** Flushes every span still buffered (a one-shot CLI command must call this before it exits). */
  shutdown(): Promise<void>;
}

let active: Tracing | null = null;

/** The tracing started by `startTracing`, or null while it is off. */
export const currentTracing = (): Tracing | null => active;

export function setCurrentTracing(tracing: Tracing | null): void {
  active = tracing;
}

/** Whether OTEL_TRACES_EXPORTER asks for tracing (unset or `none`: no). */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const names = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  return names.length > 0 && !names.includes('none');
}
