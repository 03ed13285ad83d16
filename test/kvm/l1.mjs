// The KVM host "L1" of the real-KVM harness (issue 16): building its boot files and the QEMU command
// line that boots it, shared by test/kvm/run.mjs (--tools) and test/kvm/agent-e2e.mjs.
//
// L1 = q35 under TCG (DESIGN §9: guests hang under this machine's /dev/kvm) with an emulated Intel
// IOMMU (caching-mode=on: what vfio needs to map DMA through it), 3 GiB, 2 vCPUs, and three NICs:
//   0000:00:04.0 e1000 8086:100e, no network peer   the passthrough candidate
//   0000:00:05.0 virtio-net, user net restrict=on   L1's uplink (guestfwd relays to the host's loopback)
//   0000:00:06.0 e1000 8086:100e, no network peer   a host NIC of the same id that must stay on e1000
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { phase } from '../realsys/harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const cache = process.env.PTC_KVM_CACHE ?? path.join(repo, '.cache', 'kvm');
export const boot = path.join(cache, 'boot');
export const relay = path.join(repo, 'test', 'realsys', 'relay.mjs');
export const qemuBin = process.env.PTC_KVM_QEMU ?? 'qemu-system-x86_64';
export const BDF = '0000:00:04.0';
export const UPLINK_BDF = '0000:00:05.0';
export const OTHER_BDF = '0000:00:06.0';

/** fetch.sh and build-initrd.sh, each bounded; false (with a FAIL line) when one fails. */
export function buildL1(report, { fetch = true, build = true, agentDir } = {}) {
  const env = { PTC_KVM_CACHE: cache, ...(agentDir ? { PTC_KVM_AGENT_DIR: agentDir } : {}) };
  if (fetch && !phase(report, 'fetch', ['bash', path.join(repo, 'scripts', 'kvm', 'fetch.sh')], { limitSec: 900, cwd: repo, env })) return false;
  if (build && !phase(report, 'initrd', ['bash', path.join(repo, 'scripts', 'kvm', 'build-initrd.sh')], { limitSec: 600, cwd: repo, env })) return false;
  return true;
}

/** QEMU's arguments for L1 with initramfs `img`; fwds = [[guestAddr, hostPort], ...] relayed to 127.0.0.1. */
export function l1QemuArgs({ img, fwds = [], append = '' }) {
  const guestfwd = fwds.map(([addr, port]) => `,guestfwd=tcp:${addr}-cmd:${process.execPath} ${relay} ${port}`).join('');
  return [
    '-machine', 'q35,accel=tcg', '-cpu', 'max', '-m', '3072', '-smp', '2',
    '-device', 'intel-iommu,intremap=on,caching-mode=on',
    '-device', 'e1000,addr=04.0,romfile=',
    '-netdev', `user,id=uplink,restrict=on${guestfwd}`,
    '-device', 'virtio-net-pci,netdev=uplink,addr=05.0,romfile=',
    '-device', 'e1000,addr=06.0,romfile=',
    '-kernel', path.join(boot, 'vmlinuz'),
    '-initrd', img,
    '-append', `console=ttyS0 intel_iommu=on rdinit=/init ${append}`.trim(),
    '-nographic', '-no-reboot',
  ];
}
