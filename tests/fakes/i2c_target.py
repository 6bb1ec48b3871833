"""Register-map I2C targets and a bus to hang them on: the shared part of the sensor chip models.

Runs on CPython and MicroPython. A bus carries targets by address and offers machine.I2C's methods;
an address nobody answers, or a target told to NACK, raises OSError(ENODEV) as machine.I2C does.

    bus = FakeBus()
    chip = BME280Model(bus, 0x76)          # a RegisterTarget subclass attaches itself
    bus.readfrom_mem_into(0x76, 0xD0, buf)

A target has 256 byte registers, a register pointer set by the first byte of each write, and burst
reads that auto-increment the pointer (subclasses hook ``on_read(reg)`` / ``on_write(reg, value)``).
Fault injection: ``nack = True`` (every transaction NACKs), ``nack_after = n`` (the n+1-th
transaction onwards NACKs), ``bus.log`` records the newest transactions.
"""
ENODEV = 19


class FakeBus:
    def __init__(self, name="fake-i2c0", log_limit=48):
        self.name = name
        self.targets = {}
        self.log = []               # the newest transactions (older half dropped at log_limit)
        self.log_limit = log_limit

    def _log(self, entry):
        if len(self.log) >= self.log_limit:
            del self.log[:self.log_limit // 2]
        self.log.append(entry)

    def __repr__(self):
        return self.name

    def attach(self, addr, target):
        self.targets[addr] = target

    def _target(self, addr):
        t = self.targets.get(addr)
        if t is None or t.nacks():
            raise OSError(ENODEV)
        return t

    def writeto(self, addr, buf, stop=True):
        self._log(("w", addr, bytes(buf)))
        self._target(addr).write(bytes(buf))
        return 1

    def readfrom_into(self, addr, buf, stop=True):
        self._log(("r", addr, len(buf)))
        self._target(addr).read_into(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self.writeto(addr, bytes((memaddr,)) + bytes(buf))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        t = self._target(addr)
        self._log(("wr", addr, memaddr, len(buf)))
        t.write(bytes((memaddr,)))
        t.read_into(buf)

    def scan(self):
        return sorted(self.targets)


class RegisterTarget:
    """256 registers, a pointer, auto-increment; ``reset_values`` = {reg: value} (others 0)."""
    reset_values = {}
    read_only = ()
    write_pairs = False      # BME280: a multi-byte write is (reg, value) pairs, no auto-increment

    def __init__(self, bus, addr):
        self.bus, self.addr = bus, addr
        self.regs = bytearray(256)
        self.ptr = 0
        self.nack = False
        self.nack_after = None
        self.transactions = 0
        self.reset()
        bus.attach(addr, self)

    def reset(self):
        for i in range(256):
            self.regs[i] = 0
        for r, v in self.reset_values.items():
            self.regs[r] = v

    def nacks(self):
        self.transactions += 1
        if self.nack:
            return True
        return self.nack_after is not None and self.transactions > self.nack_after

    def auto_increment(self):
        return True

    def write(self, data):
        if not data:
            return
        if self.write_pairs:
            self.ptr = data[0]
            for i in range(0, len(data) - 1, 2):
                self._store(data[i], data[i + 1])
            if len(data) % 2 == 0:
                self.ptr = data[-2]
            return
        self.ptr = data[0]
        for v in data[1:]:
            self._store(self.ptr, v)
            if self.auto_increment():
                self.ptr = (self.ptr + 1) & 0xFF

    def _store(self, reg, value):
        if reg in self.read_only:
            return
        self.regs[reg] = value
        self.on_write(reg, value)

    def read_into(self, buf):
        for i in range(len(buf)):
            buf[i] = self.on_read(self.ptr)
            if self.auto_increment():
                self.ptr = (self.ptr + 1) & 0xFF

    def on_read(self, reg):
        return self.regs[reg]

    def on_write(self, reg, value):
        pass


def put_s16_be(regs, at, v):
    v &= 0xFFFF
    regs[at] = v >> 8
    regs[at + 1] = v & 0xFF


def put_s16_le(regs, at, v):
    v &= 0xFFFF
    regs[at] = v & 0xFF
    regs[at + 1] = v >> 8
