import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { type Tracing, currentTracing, setCurrentTracing } from './tracing-state.js';

export { type Tracing, currentTracing } from './tracing-state.js';

/**
 * Exporter from the standard OpenTelemetry variables, off unless asked for: OTEL_TRACES_EXPORTER
 * `otlp` (OTLP over HTTP; OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, default
 * http://localhost:4318) or `console`; unset or `none` means no tracing at all.
 */
function exporterFromEnv(env: NodeJS.ProcessEnv): SpanExporter | null {
  const names = (env.OTEL_TRACES_EXPORTER ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0 || names.includes('none')) return null;
  const [name, ...more] = names;
  if (more.length > 0) throw new PtcError(ErrorCode.INVALID_INPUT, `OTEL_TRACES_EXPORTER: ptctl supports one exporter at a time, not "${env.OTEL_TRACES_EXPORTER}"`);
  if (name === 'otlp') {
    const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? 'http/json';
    if (protocol !== 'http/json' && protocol !== 'http/protobuf') throw new PtcError(ErrorCode.INVALID_INPUT, `OTEL_EXPORTER_OTLP_PROTOCOL: ptctl exports OTLP over HTTP (http/json), not "${protocol}"`);
    return new OTLPTraceExporter();
  }
  if (name === 'console') return new ConsoleSpanExporter();
  throw new PtcError(ErrorCode.INVALID_INPUT, `OTEL_TRACES_EXPORTER: "${name}" is not one ptctl knows (otlp, console or none)`);
}

/**
 * Starts tracing for this process when the environment asks for it (see exporterFromEnv), registering
 * the global tracer provider, the W3C propagator and an async-hooks context manager. Returns null, and
 * changes nothing, when tracing is off.
 */
export function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing | null {
  const running = currentTracing();
  if (running) return running;
  const exporter = exporterFromEnv(env);
  if (!exporter) return null;
  const resource = new Resource({ 'service.name': env.OTEL_SERVICE_NAME ?? serviceName });
  const spanProcessor = new BatchSpanProcessor(exporter, { scheduledDelayMillis: 1000 });
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register();
  const tracing: Tracing = {
    resource,
    spanProcessor,
    shutdown: async () => {
      await provider.shutdown().catch(() => undefined);
      setCurrentTracing(null);
    },
  };
  setCurrentTracing(tracing);
  return tracing;
}
