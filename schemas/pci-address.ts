import { z } from 'zod';

// Domain:bus:device.function as sysfs spells it. Device is 5 bits (00-1f), function 3 bits (0-7).
const BDF_PATTERN = /^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/;

/**
 * A PCI address in the strict `DDDD:BB:DD.F` form. Upper-case hex is accepted and normalised to
 * lower case (sysfs, pciback and xl all use lower case); anything else is rejected, so a BDF can be
 * used safely as a file name, a sysfs path component and an argv element.
 */
export const PciAddress = z
  .string()
  .max(12, 'a PCI address is 12 characters: DDDD:BB:DD.F')
  .transform((s) => s.toLowerCase())
  .pipe(z.string().regex(BDF_PATTERN, 'expected a PCI address like 0000:09:00.0 (domain:bus:device.function, hex)'));
export type PciAddress = z.infer<typeof PciAddress>;

/** Stable order for BDF lists (hide= lines, inventory): numeric, which for this fixed-width form is lexical. */
export function compareBdf(a: PciAddress, b: PciAddress): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
