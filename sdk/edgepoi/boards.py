"""Board definitions: parse units, apply defaults and validate a board (portable: device boot and host).

The same checks run on the board at boot (``firmware/boot.py``) and on the host (``edgepoi board validate``,
the bundle builder). Every problem is reported with the field path that holds it and why.

Usage::

    from edgepoi import boards
    board = boards.validate(json.load(open("board.json")))   # -> normalised dict (units parsed)
    boards.parse_freq("400k")   # -> 400000
    boards.parse_size("96K")    # -> 98304
    # boards.BoardError.errors is a list of "path: reason" lines, e.g.
    # "i2c[0].sda: GPIO6 is reserved for the SPI flash on esp32"
"""

PLATFORMS = ("micropython", "cpython")
CHIPS = ("esp32", "esp32s3", "esp32c3", "bcm2710a1", "bcm2711", "bcm2712", "unix")
MPY_ARCHS = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
             "xtensawin", "rv32imc", "rv64imc")
# Known sensor types -> the I2C addresses the part can answer on (None: not an I2C part).
SENSORS = {"bme280": (0x76, 0x77), "mpu6050": (0x68, 0x69), "lsm6ds": (0x6A, 0x6B), "adc": None,
           "synthetic": None, "replay": None}
SECURE_ELEMENTS = ("none", "atecc608", "tpm2", "pkcs11")
LED_KINDS = ("none", "gpio", "ws2812", "sysfs")
FREQ_MIN = 10000
FREQ_MAX = 1000000

_TOP = ("$schema", "id", "name", "description", "aliases", "platform", "chip", "micropython_board", "mpy",
        "flash_size", "psram_size", "heap_budget", "gpios", "reserved_pins", "strapping_pins", "input_only_pins",
        "adc_pins", "adc_unavailable", "i2c_ids", "i2c", "secure_element", "sensors", "status_led")
_REQUIRED = ("id", "name", "platform", "chip", "heap_budget")


class BoardError(ValueError):
    """A board definition is invalid. ``errors`` lists every problem as "field.path: reason"."""

    def __init__(self, errors):
        super().__init__("invalid board:\n  " + "\n  ".join(errors))
        self.errors = errors


def _num(text, units, what):
    # "400k" / "400 kHz" / "96K" / 4096 -> int, with a table of suffix multipliers.
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    s = text.strip().replace(" ", "") if isinstance(text, str) else ""
    i = 0
    while i < len(s) and (s[i].isdigit() or s[i] == "."):
        i += 1
    try:
        v = float(s[:i]) * units[s[i:]]
    except (ValueError, KeyError):
        raise ValueError("cannot read %r as %s" % (text, what))
    if v != int(v):
        raise ValueError("%r is not a whole number of %s" % (text, what))
    return int(v)


_SIZE = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KiB": 1024, "M": 1048576, "MB": 1048576, "MiB": 1048576,
         "G": 1073741824, "GB": 1073741824, "GiB": 1073741824}
_FREQ = {"": 1, "Hz": 1, "k": 1000, "K": 1000, "kHz": 1000, "KHz": 1000, "M": 1000000, "MHz": 1000000}


def parse_size(v):
    """'96K' -> 98304, '4M' -> 4194304 (binary multiples), ints pass. Raises ValueError."""
    return _num(v, _SIZE, "a size like '96K' or '4M'")


def parse_freq(v):
    """'400k', '100kHz', '1MHz' -> Hz (decimal multiples), ints pass. Raises ValueError."""
    return _num(v, _FREQ, "a frequency like '400k' or '100kHz'")


def _int(v, what="an integer"):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v, 16) if v[:2] in ("0x", "0X") else int(v)
        except ValueError:
            pass
    raise ValueError("expected %s, got %r" % (what, v))


def _pin(v):
    p = _int(v[4:] if isinstance(v, str) and v.upper().startswith("GPIO") else v, "a GPIO number")
    if p < 0:
        raise ValueError("GPIO number must be >= 0, got %d" % p)
    return p


def _pins(v):
    # [6, "9-11", "GPIO12"] -> sorted list of ints.
    if not isinstance(v, list):
        raise ValueError("expected a list of pins or ranges like \"6-11\"")
    out = []
    for item in v:
        if isinstance(item, str) and "-" in item:
            a, b = [_pin(x) for x in item.split("-", 1)]
            if b < a:
                raise ValueError("range %r runs backwards" % item)
            out.extend(range(a, b + 1))
        else:
            out.append(_pin(item))
    return sorted(set(out))


class _V:
    """Collects errors while normalising; ``at(path, fn, value)`` runs fn and records its failure."""

    def __init__(self):
        self.errors = []
        self.used = {}        # pin -> the field path that took it
        self.gpios = self.input_only = ()
        self.reserved = self.straps = {}
        self.chip = None

    def pin(self, path, v, output=True, i2c=False):
        """Parse a pin the board uses and check it against the chip's pin facts."""
        pin = self.at(path, _pin, v)
        if pin is None:
            return None
        where = " on " + str(self.chip)
        if self.gpios and pin not in self.gpios:
            self.err(path, "GPIO%d does not exist%s" % (pin, where))
        elif pin in self.reserved:
            self.err(path, "GPIO%d is reserved for %s%s" % (pin, self.reserved[pin], where))
        elif output and pin in self.input_only:
            self.err(path, "GPIO%d is input-only%s (no output driver)%s" % (
                pin, where, ", I2C needs an open-drain output" if i2c else ""))
        elif i2c and pin in self.straps:
            self.err(path, "GPIO%d is a strapping pin (%s, %s) and I2C pull-ups would change how the chip"
                     " boots \u2014 pick another" % ((pin,) + self.straps[pin]))
        elif pin in self.used:
            self.err(path, "GPIO%d is already used by %s" % (pin, self.used[pin]))
        self.used[pin] = path
        return pin

    def err(self, path, why):
        self.errors.append("%s: %s" % (path, why))

    def at(self, path, fn, v, default=None):
        try:
            return fn(v)
        except ValueError as e:
            self.err(path, str(e))
            return default


def _str(v):
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string, got %r" % (v,))
    return v


def _ident(v):
    if _str(v)[0] == "-" or [ch for ch in v if not (ch.isdigit() or "a" <= ch <= "z" or ch == "-")]:
        raise ValueError("%r: use lower-case letters, digits and '-' (not first)" % v)
    return v


def _mpyver(v):
    parts = _str(v).split(".")
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise ValueError("expected \"MAJOR.SUB\" like \"6.3\", got %r" % v)
    return v


def _join(xs):
    return ", ".join([str(x) for x in xs]) or "none"


def _choice(options):
    def check(v):
        if v not in options:
            raise ValueError("unknown value %r (known: %s)" % (v, _join(options)))
        return v
    return check


def _obj(c, path, v, allowed):
    if not isinstance(v, dict):
        c.err(path or "board", "expected an object, got %r" % (v,))
        return {}
    for k in v:
        if k not in allowed:
            near = [a for a in allowed if a[:3] == str(k)[:3]]
            c.err((path + "." if path else "") + str(k), "unknown field%s (known: %s)" % (
                " \u2014 did you mean %r?" % near[0] if near else "", ", ".join(allowed)))
    return v


def _why_list(c, path, v):
    # [{"pins": [...], "why": "..."}] -> ({pin: why}, normalised list)
    out, norm = {}, []
    for i, item in enumerate(_list(c, path, v)):
        p = "%s[%d]" % (path, i)
        item = _obj(c, p, item, ("pins", "why"))
        why = c.at(p + ".why", _str, item.get("why"), "")
        pins = c.at(p + ".pins", _pins, item.get("pins"), [])
        for pin in pins:
            out[pin] = why
        norm.append({"pins": pins, "why": why})
    return out, norm


def validate(board):
    """Check a board dict and return a normalised copy (units parsed, defaults applied, pins as ints).

    Raises:
        BoardError: listing every problem as "field.path: reason".
    """
    c = _V()
    if not isinstance(board, dict):
        raise BoardError(["board: expected a JSON object"])
    _obj(c, "", board, _TOP)
    for k in _REQUIRED + (("flash_size",) if board.get("platform") == "micropython" else ()):
        if k not in board:
            c.err(k, "missing (required)")
    b = {"id": c.at("id", _ident, board.get("id", "?"), "?")}
    for k in ("name", "description", "micropython_board"):
        if k in board:
            b[k] = c.at(k, _str, board[k])
    aliases = _list(c, "aliases", board.get("aliases", []))
    b["aliases"] = [c.at("aliases[%d]" % i, _str, a) for i, a in enumerate(aliases)]
    b["platform"] = c.at("platform", _choice(PLATFORMS), board["platform"]) if "platform" in board else None
    chip = b["chip"] = c.at("chip", _choice(CHIPS), board["chip"]) if "chip" in board else None
    for k in ("flash_size", "psram_size", "heap_budget"):
        if k in board:
            b[k] = c.at(k, parse_size, board[k])
    _check_mpy(c, board, b)
    gpios = b["gpios"] = c.at("gpios", _pins, board.get("gpios", []), [])
    reserved, b["reserved_pins"] = _why_list(c, "reserved_pins", board.get("reserved_pins", []))
    b["input_only_pins"] = c.at("input_only_pins", _pins, board.get("input_only_pins", []), [])
    b["adc_pins"] = c.at("adc_pins", _pins, board.get("adc_pins", []), [])
    adc_off, b["adc_unavailable"] = _why_list(c, "adc_unavailable", board.get("adc_unavailable", []))
    c.straps, b["strapping_pins"] = _straps(c, _list(c, "strapping_pins", board.get("strapping_pins", [])))
    b["i2c_ids"] = c.at("i2c_ids", _pins, board.get("i2c_ids", []), [])
    c.gpios, c.reserved, c.input_only, c.chip = gpios, reserved, b["input_only_pins"], chip
    b["i2c"] = _check_i2c(c, _list(c, "i2c", board.get("i2c", [])), b)
    buses = dict([(bus["id"], {}) for bus in b["i2c"]])
    b["secure_element"] = _check_se(c, board.get("secure_element", {"type": "none"}), b, buses)
    b["sensors"] = _check_sensors(c, _list(c, "sensors", board.get("sensors", [])), b, buses, adc_off)
    b["status_led"] = _check_led(c, board.get("status_led"), b)
    if c.errors:
        raise BoardError(c.errors)
    return b


def _check_mpy(c, board, b):
    m = board.get("mpy")
    if b["platform"] == "micropython":
        if m is None:
            c.err("mpy", "missing: a MicroPython board needs {\"version\": \"6.3\", \"arch\": ...} for mpy-cross")
            return
        m = _obj(c, "mpy", m, ("version", "arch", "small_int_bits"))
        b["mpy"] = {"version": c.at("mpy.version", _mpyver, m.get("version")),
                    "arch": c.at("mpy.arch", _choice(MPY_ARCHS), m.get("arch")),
                    "small_int_bits": c.at("mpy.small_int_bits", _int, m.get("small_int_bits", 31))}
        if b["mpy"]["small_int_bits"] not in (None, 31, 63):
            c.err("mpy.small_int_bits", "31 (32-bit ports) or 63 (64-bit ports), got %r" % m["small_int_bits"])
    elif m is not None:
        c.err("mpy", "a %s board runs .py source, it has no .mpy format" % b["platform"])


def _list(c, path, v):
    if isinstance(v, list):
        return v
    c.err(path, "expected a list")
    return []


def _straps(c, v):
    straps, norm = {}, []
    for i, s in enumerate(v):
        p = "strapping_pins[%d]" % i
        s = _obj(c, p, s, ("pin", "name", "why"))
        pin = c.at(p + ".pin", _pin, s.get("pin"))
        straps[pin] = (c.at(p + ".name", _str, s.get("name", "GPIO%s" % pin)), c.at(p + ".why", _str, s.get("why")))
        norm.append({"pin": pin, "name": straps[pin][0], "why": straps[pin][1]})
    return straps, norm


def _check_i2c(c, v, b):
    out = []
    for i, bus in enumerate(v):
        p = "i2c[%d]" % i
        bus = _obj(c, p, bus, ("id", "sda", "scl", "freq", "device"))
        bid = c.at(p + ".id", _int, bus.get("id", i))
        if b["i2c_ids"] and bid not in b["i2c_ids"]:
            c.err(p + ".id", "no I2C controller %s on %s (controllers: %s)" % (bid, b["chip"], _join(b["i2c_ids"])))
        if bid in [o["id"] for o in out]:
            c.err(p + ".id", "I2C bus %s is defined twice" % bid)
        n = {"id": bid}
        for k in ("sda", "scl"):
            if k not in bus:
                c.err(p + "." + k, "missing (required)")
            else:
                n[k] = c.pin(p + "." + k, bus[k], True, True)
        f = n["freq"] = c.at(p + ".freq", parse_freq, bus.get("freq", 100000), 100000)
        if f is not None and not FREQ_MIN <= f <= FREQ_MAX:
            c.err(p + ".freq", "%d Hz is outside %d..%d Hz (standard 100k, fast 400k, fast-plus 1M)"
                  % (f, FREQ_MIN, FREQ_MAX))
        if b["platform"] == "cpython":
            n["device"] = c.at(p + ".device", _str, bus.get("device", "/dev/i2c-%s" % bid))
        out.append(n)
    return out


def _claim(c, path, buses, bus, addr, who):
    if addr is None or bus not in buses:
        pass
    elif not 0x08 <= addr <= 0x77:
        c.err(path, "0x%02x is not a 7-bit I2C device address (0x08..0x77)" % addr)
    elif addr in buses[bus]:
        c.err(path, "address 0x%02x on I2C bus %s is already taken by %s" % (addr, bus, buses[bus][addr]))
    else:
        buses[bus][addr] = who


def _bus_of(c, path, v, buses):
    bus = c.at(path, _int, v)
    if bus is not None and bus not in buses:
        c.err(path, "no I2C bus %s on this board (buses: %s)" % (bus, _join(sorted(buses))))
    return bus


def _check_se(c, v, b, buses):
    se = _obj(c, "secure_element", v, ("type", "i2c", "address", "device", "module", "slot"))
    t = c.at("secure_element.type", _choice(SECURE_ELEMENTS), se.get("type", "none"))
    out = {"type": t}
    if t == "atecc608":
        out["i2c"] = _bus_of(c, "secure_element.i2c", se.get("i2c", 0), buses)
        out["address"] = c.at("secure_element.address", _int, se.get("address", 0x60))
        _claim(c, "secure_element.address", buses, out["i2c"], out["address"], "secure_element (atecc608)")
        out["slot"] = c.at("secure_element.slot", _int, se.get("slot", 0))
    elif t in ("tpm2", "pkcs11"):
        if b["platform"] != "cpython":
            c.err("secure_element.type", "%s needs a Linux host (CPython); %s is a %s board" % (
                t, b["id"], b["platform"]))
        if t == "tpm2":
            out["device"] = c.at("secure_element.device", _str, se.get("device", "/dev/tpmrm0"))
        else:
            out["module"] = c.at("secure_element.module", _str, se.get("module"))
    return out


def _check_sensors(c, v, b, buses, adc_off):
    out = []
    names = []
    for i, s in enumerate(v):
        p = "sensors[%d]" % i
        s = _obj(c, p, s, ("type", "name", "i2c", "address", "pin", "seed", "path", "period_ms"))
        t = s.get("type")
        if t not in SENSORS:
            c.err(p + ".type", "unknown sensor %r (known: %s)" % (t, ", ".join(sorted(SENSORS))))
            continue
        n = {"type": t, "name": c.at(p + ".name", _str, s.get("name", t if t not in names else "%s_%d" % (t, i)))}
        if n["name"] in names:
            c.err(p + ".name", "sensor name %r is used twice" % n["name"])
        names.append(n["name"])
        addrs = SENSORS[t]
        if addrs is not None:
            n["i2c"] = _bus_of(c, p + ".i2c", s.get("i2c", 0), buses)
            a = n["address"] = c.at(p + ".address", _int, s.get("address", addrs[0]))
            if a is not None and a not in addrs:
                c.err(p + ".address", "0x%02x is not a %s address (%s)" % (
                    a, t, " or ".join(["0x%02x" % x for x in addrs])))
            else:
                _claim(c, p + ".address", buses, n["i2c"], a, p + " (%s)" % t)
        elif t == "adc":
            _check_adc(c, p + ".pin", s, b, n, adc_off)
        elif t == "synthetic":
            n["seed"] = c.at(p + ".seed", _int, s.get("seed", 1))
        elif t == "replay":
            n["path"] = c.at(p + ".path", _str, s.get("path"))
        if "period_ms" in s:
            n["period_ms"] = c.at(p + ".period_ms", _int, s["period_ms"])
        out.append(n)
    return out


def _check_adc(c, path, s, b, n, adc_off):
    if not b["adc_pins"]:
        c.err(path[:-4] + ".type", "%s has no ADC (%s); use an external I2C ADC" % (b["id"], b["chip"]))
        return
    if "pin" not in s:
        c.err(path, "missing (required for an adc sensor)")
        return
    pin = n["pin"] = c.pin(path, s["pin"], False)
    if pin is None:
        return
    if pin in adc_off:
        c.err(path, "GPIO%d is on %s" % (pin, adc_off[pin]))
    elif pin not in b["adc_pins"]:
        c.err(path, "GPIO%d has no ADC channel on %s (ADC pins: %s)" % (pin, b["chip"], _join(b["adc_pins"])))


def _check_led(c, v, b):
    if v is None:
        return {"kind": "none"}
    led = _obj(c, "status_led", v, ("kind", "pin", "active_low", "name"))
    kind = c.at("status_led.kind", _choice(LED_KINDS), led.get("kind", "gpio"))
    out = {"kind": kind}
    if kind in ("gpio", "ws2812"):
        out["pin"] = c.pin("status_led.pin", led.get("pin"))
        out["active_low"] = bool(led.get("active_low", False))
    elif kind == "sysfs":
        out["name"] = c.at("status_led.name", _str, led.get("name"))
    return out


def resolve(name, boards):
    """Find a board by id or alias in a {id: board} mapping (case-insensitive). Raises KeyError."""
    key = name.lower()
    for bid, bd in boards.items():
        if bid.lower() == key or key in [a.lower() for a in bd.get("aliases", [])]:
            return bd
    raise KeyError("unknown board %r (known: %s)" % (name, ", ".join(sorted(boards))))


def load(path="board.json"):
    """Read and validate a board file (on a device: the bundle's board.json)."""
    import json
    with open(path) as f:
        return validate(json.load(f))
