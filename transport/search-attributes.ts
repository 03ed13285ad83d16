import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { GrpcStatus } from './grpc-status.js';
import { SEARCH_ATTRIBUTES } from '../workflows/visibility.js';

const INDEXED_TYPE: Record<(typeof SEARCH_ATTRIBUTES)[number]['type'], proto.temporal.api.enums.v1.IndexedValueType> = {
  KEYWORD: proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
};

/** `temporal server start-dev` flags that register ptctl's search attributes. */
export function devServerSearchAttributeArgs(): string[] {
  return SEARCH_ATTRIBUTES.flatMap((a) => ['--search-attribute', `${a.name}=${a.type === 'INT' ? 'Int' : 'Keyword'}`]);
}

/**
 * Registers the search attributes ptctl's workflows set, where missing. Returns the names it added.
 * Needs operator rights on the namespace; where the worker lacks them (Temporal Cloud), an operator
 * creates them once with `temporal operator search-attribute create` and this finds nothing to add.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const known = await registeredSearchAttributes(connection, namespace);
  const missing = SEARCH_ATTRIBUTES.filter((a) => !known.has(a.name));
  if (missing.length === 0) return [];
  await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: Object.fromEntries(missing.map((a) => [a.name, INDEXED_TYPE[a.type]])) });
  return missing.map((a) => a.name);
}

/** Custom search attributes the namespace has; empty where the server cannot list them (the time-skipping test server). */
async function registeredSearchAttributes(connection: Connection, namespace: string): Promise<Set<string>> {
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    return new Set(Object.keys(existing.customAttributes ?? {}));
  } catch (err) {
    if ((err as { code?: unknown }).code === GrpcStatus.UNIMPLEMENTED) return new Set();
    throw err;
  }
}
