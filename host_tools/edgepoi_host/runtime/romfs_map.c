/* Memory-mapped "flash" for the MicroPython unix port: an LD_PRELOAD shim.
 *
 * A board with a ROMFS partition (MicroPython >= 1.25: ESP32, STM32, RP2...) memory-maps that partition
 * and runs .mpy bytecode from it in place, so code does not take heap. The unix port has no such
 * partition. This shim plays it: when the process starts, it maps the image named by $EDGEPOI_ROMFS
 * read-only, outside MicroPython's GC heap, and publishes where in $EDGEPOI_ROMFS_MAP ("<hex addr>:<len>").
 * The unix board's startup code (edgepoi_host.runtime.romfs.MOUNT_CODE) wraps that memory in
 * uctypes.bytearray_at and mounts it with vfs.VfsRom at /rom, as the firmware of a real board does.
 *
 * Nothing else in the process is changed. Errors are reported on stderr and leave the variable unset.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

__attribute__((constructor)) static void edgepoi_romfs_map(void) {
    const char *path = getenv("EDGEPOI_ROMFS");
    if (path == NULL || *path == '\0') {
        return;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror("edgepoi romfs: open");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        fprintf(stderr, "edgepoi romfs: %s is empty or unreadable\n", path);
        close(fd);
        return;
    }
    void *addr = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (addr == MAP_FAILED) {
        perror("edgepoi romfs: mmap");
        return;
    }
    char value[64];
    snprintf(value, sizeof value, "%lx:%lld", (unsigned long)addr, (long long)st.st_size);
    setenv("EDGEPOI_ROMFS_MAP", value, 1);
}
