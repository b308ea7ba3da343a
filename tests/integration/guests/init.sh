#!/bin/busybox sh
# /init of the small Linux test guest (busybox-static initramfs).
# Kernel command line knobs:
#   virtops.dirty_mib=N       size of the memory region rewritten on each pass (0: idle guest)
#   virtops.dirty_interval=S  seconds to sleep between passes (fractions allowed)
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/shm
mount -t tmpfs -o size=90% tmpfs /dev/shm
dirty_mib=0
dirty_interval=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    virtops.dirty_mib=*) dirty_mib="${arg#*=}" ;;
    virtops.dirty_interval=*) dirty_interval="${arg#*=}" ;;
  esac
done
echo "virtops-guest: up, dirtying ${dirty_mib} MiB every ${dirty_interval}s"
if [ "$dirty_mib" -gt 0 ]; then
  # Random (not zero) pages: QEMU sends zero pages almost for free.
  dd if=/dev/urandom of=/dev/shm/source bs=1M count="$dirty_mib" 2>/dev/null
  pass=0
  while true; do
    dd if=/dev/shm/source of=/dev/shm/dirty bs=1M conv=notrunc 2>/dev/null
    pass=$((pass + 1))
    [ $((pass % 100)) -eq 0 ] && echo "virtops-guest: pass $pass"
    sleep "$dirty_interval"
  done
fi
while true; do
  sleep 3600
done
