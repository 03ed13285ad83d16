import { join } from 'node:path';
import { z } from 'zod';
import { readJson, writeJsonAtomic } from './host-files.js';

const Records = z.object({
  /** Driver each device had before ptctl bound it to pciback (rule 11: give back exactly that one). */
  originalDrivers: z.record(z.string(), z.string().nullable()),
  /** Recent hotplug times per device (epoch ms), for the agent's own cap. */
  hotplugs: z.record(z.string(), z.array(z.number())),
  /** Boot id the agent last announced; a different one at start means the host rebooted. */
  lastBootId: z.string().nullable(),
  /**
   * Multi-step effects in progress, written before the first step and removed after the last: what a
   * crash in between left behind, for the next start to repair. Absent in records of older agents.
   */
  intents: z.record(z.string(), z.object({ op: z.enum(['bind', 'reload']), opId: z.string(), originalDriver: z.string().nullable(), at: z.string() })).default({}),
  /** The guest each device was last attached to, and in which boot (a boot resets the buses). Absent in older records. */
  tenants: z.record(z.string(), z.object({ guest: z.string(), bootId: z.string() })).default({}),
});
type Records = z.infer<typeof Records>;
export type Intent = Records['intents'][string];

/** The agent's durable memory about its host, kept next to the journal. */
export class DeviceRecords {
  private constructor(
    private readonly path: string,
    private data: Records,
  ) {}

  static async open(stateDir: string): Promise<DeviceRecords> {
    const path = join(stateDir, 'records.json');
    const raw = await readJson(path);
    const data = raw === null ? { originalDrivers: {}, hotplugs: {}, lastBootId: null, intents: {}, tenants: {} } : Records.parse(raw);
    return new DeviceRecords(path, data);
  }

  originalDriver(bdf: string): string | null | undefined {
    return this.data.originalDrivers[bdf];
  }

  /**
   * Records the driver a device had before ptctl moves it. A known driver is never overwritten with
   * "no driver": a retry after a bind that failed half-way finds the device driverless, and giving it
   * back must still bind the driver it had at first (rule 14).
   */
  async setOriginalDriver(bdf: string, driver: string | null): Promise<void> {
    const known = this.data.originalDrivers[bdf];
    if (driver === null && typeof known === 'string') return;
    this.data.originalDrivers[bdf] = driver;
    await this.flush();
  }

  async forgetOriginalDriver(bdf: string): Promise<void> {
    delete this.data.originalDrivers[bdf];
    await this.flush();
  }

  recentHotplugs(bdf: string, now: number, windowMs: number): number[] {
    return (this.data.hotplugs[bdf] ?? []).filter((t) => now - t < windowMs);
  }

  async addHotplug(bdf: string, now: number, windowMs: number): Promise<void> {
    this.data.hotplugs[bdf] = [...this.recentHotplugs(bdf, now, windowMs), now];
    await this.flush();
  }

  get lastBootId(): string | null {
    return this.data.lastBootId;
  }

  async setLastBootId(bootId: string): Promise<void> {
    this.data.lastBootId = bootId;
    await this.flush();
  }

  /** The guest that last held the device in boot `bootId`; null when none did since that boot. */
  lastTenant(bdf: string, bootId: string): string | null {
    const t = this.data.tenants[bdf];
    return t !== undefined && t.bootId === bootId ? t.guest : null;
  }

  async setTenant(bdf: string, guest: string, bootId: string): Promise<void> {
    const t = this.data.tenants[bdf];
    if (t?.guest === guest && t.bootId === bootId) return;
    this.data.tenants[bdf] = { guest, bootId };
    await this.flush();
  }

  /** Intents by device address. */
  get intents(): Readonly<Record<string, Intent>> {
    return this.data.intents;
  }

  /** Records intents for several devices in one durable write, before the effect that touches them. */
  async setIntents(intents: Record<string, Intent>): Promise<void> {
    this.data.intents = { ...this.data.intents, ...intents };
    await this.flush();
  }

  async clearIntents(bdfs: readonly string[]): Promise<void> {
    if (!bdfs.some((b) => b in this.data.intents)) return;
    for (const b of bdfs) delete this.data.intents[b];
    await this.flush();
  }

  private async flush(): Promise<void> {
    await writeJsonAtomic(this.path, this.data);
  }
}
