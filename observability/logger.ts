import { isSpanContextValid, trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';
import type { LogLevel, LogMetadata, Logger as TemporalLogger } from '@temporalio/common';

/** The trace id of the span active where a line is logged, so logs and traces can be joined. */
function traceMixin(): Record<string, string> {
  const ctx = trace.getActiveSpan()?.spanContext();
  return ctx && isSpanContextValid(ctx) ? { traceId: ctx.traceId, spanId: ctx.spanId } : {};
}

/** One JSON line per event on stderr (stdout stays for command output), with the active trace id. */
export function createLogger(name: string, level = process.env.PTC_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, mixin: traceMixin }, pino.destination(2));
}

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };

/**
 * The Temporal SDK's logger on pino: workflow and activity lines arrive with the SDK's metadata
 * (workflowId, runId, workflowType, activityType, taskQueue) plus what the workflow logged (hostId,
 * bdf, step), as JSON fields.
 */
export class PinoTemporalLogger implements TemporalLogger {
  constructor(private readonly out: Logger) {}

  log(level: LogLevel, message: string, meta?: LogMetadata): void {
    this.out[LEVELS[level]](meta ?? {}, message);
  }
  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
