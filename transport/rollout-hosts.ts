import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostWork, type HostWorkInput, HostsRef, type InlineRolloutInput, type RolloutInput, MAX_PAGE_BYTES, MAX_PAGE_HOSTS, PLANS_BUCKET, UniqueHosts, hostsPageKey } from '../schemas/rollout.js';

const HostPage = z.array(HostWork);
const encoder = new TextEncoder();

/**
 * How many hosts go on a page: as many as fit MAX_PAGE_BYTES if every host were as large as the largest
 * one, so every page fits whatever its mix (a fixed page size lets a generation find host i without an index).
 */
export function pageSizeFor(hosts: readonly HostWorkInput[]): number {
  const largest = hosts.reduce((max, h) => Math.max(max, encoder.encode(JSON.stringify(h)).length + 1), 1);
  return Math.max(1, Math.min(MAX_PAGE_HOSTS, Math.floor(MAX_PAGE_BYTES / largest)));
}

async function plansBucket(nc: NatsConnection) {
  try {
    return await new Kvm(nc).open(PLANS_BUCKET);
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `the rollout plans bucket KV ${PLANS_BUCKET} cannot be opened (${(err as Error).message}); start a ptctl worker of this version once, which creates it`);
  }
}

/**
 * Writes a rollout's hosts into KV `ptc_plans` as `<key>.<page>` and returns the reference the
 * workflow takes instead of the hosts. Validated whole first: a page the workflow loads is as valid as
 * the list it came from. Writing the same key again writes the same pages (a retried activity).
 */
export async function storeRolloutHosts(nc: NatsConnection, key: string, hosts: readonly HostWorkInput[]): Promise<HostsRef> {
  const valid = UniqueHosts.parse(hosts);
  if (valid.length === 0) throw new PtcError(ErrorCode.INVALID_INPUT, 'a rollout needs at least one host');
  const pageSize = pageSizeFor(valid);
  const ref = HostsRef.parse({ key, count: valid.length, pageSize });
  const kv = await plansBucket(nc);
  // A few puts in flight at once: 200 pages of a 100,000-host plan take one round trip each otherwise.
  const pages = Math.ceil(valid.length / pageSize);
  const inFlight = new Set<Promise<unknown>>();
  for (let page = 0; page < pages; page++) {
    const put = kv.put(hostsPageKey(ref, page), JSON.stringify(valid.slice(page * pageSize, (page + 1) * pageSize)));
    inFlight.add(put);
    void put.finally(() => inFlight.delete(put)).catch(() => undefined);
    if (inFlight.size >= 16) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return ref;
}

/** Page `page` of a rollout's hosts, validated by the same schema as when it was written. */
export async function loadRolloutHosts(nc: NatsConnection, ref: HostsRef, page: number): Promise<HostWork[]> {
  const kv = await plansBucket(nc);
  const entry = await kv.get(hostsPageKey(ref, page));
  if (!entry || entry.operation !== 'PUT') {
    throw new PtcError(ErrorCode.INVALID_INPUT, `page ${page} of rollout hosts ${ref.key} is missing from KV ${PLANS_BUCKET} (deleted, or the bucket was recreated): apply the plan again`);
  }
  const hosts = HostPage.safeParse(entry.json());
  if (!hosts.success) throw new PtcError(ErrorCode.INVALID_INPUT, `page ${page} of rollout hosts ${ref.key} in KV ${PLANS_BUCKET} is not a list of hosts: ${hosts.error.issues[0]?.message ?? 'invalid'}`);
  return hosts.data;
}

/** Removes a finished rollout's pages (purged, so no history of them stays either). */
export async function dropRolloutHosts(nc: NatsConnection, ref: HostsRef): Promise<void> {
  const kv = await plansBucket(nc);
  const pages = Math.ceil(ref.count / ref.pageSize);
  for (let page = 0; page < pages; page++) await kv.purge(hostsPageKey(ref, page));
}

/** A resolved rollout with its hosts stored under `key`: the start payload stays a few hundred bytes at any fleet size. */
export async function storeRolloutInput(nc: NatsConnection, input: InlineRolloutInput, key: string): Promise<RolloutInput> {
  const { hosts, ...rest } = input;
  return { ...rest, hostsRef: await storeRolloutHosts(nc, key, hosts) };
}
