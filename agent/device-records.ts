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
});
type Records = z.infer<typeof Records>;

/** The agent's durable memory about its host, kept next to the journal. */
export class DeviceRecords {
  private constructor(
    private readonly path: string,
    private data: Records,
  ) {}

  static async open(stateDir: string): Promise<DeviceRecords> {
    const path = join(stateDir, 'records.json');
    const raw = await readJson(path);
    const data = raw === null ? { originalDrivers: {}, hotplugs: {}, lastBootId: null } : Records.parse(raw);
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

  private async flush(): Promise<void> {
    await writeJsonAtomic(this.path, this.data);
  }
}
