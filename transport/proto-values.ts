// Values of Temporal's protobuf messages, whichever protobufjs build decoded them: the SDK's static
// module (`@temporalio/proto`) or the CLI's subset descriptor.

/** The name an enum gives `value` (`values` maps names to numbers, as a protobufjs enum does); undefined when it has none. */
export function enumKey(values: Readonly<Record<string, number | string>>, value: number): string | undefined {
  return Object.keys(values).find((key) => values[key] === value);
}

/**
 * `WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING` → `draining`: an enum value's own name, without its
 * prefix; null for 0 (`…_UNSPECIFIED`) and for a value the table does not name.
 */
export function enumLabel(values: Readonly<Record<string, number | string>>, value: number | null | undefined, prefix: string): string | null {
  if (!value) return null;
  const name = enumKey(values, value);
  return name?.startsWith(prefix) && !name.endsWith('_UNSPECIFIED') ? name.slice(prefix.length).toLowerCase().replaceAll('_', '-') : null;
}

/** A google.protobuf.Timestamp (its int64 seconds a Long or a number); null when unset. */
export type Timestamp = { seconds?: { toNumber(): number } | number | null; nanos?: number | null } | null | undefined;

export function timestampDate(ts: Timestamp): Date | null {
  if (!ts?.seconds) return null;
  const seconds = typeof ts.seconds === 'number' ? ts.seconds : ts.seconds.toNumber();
  return new Date(seconds * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}
