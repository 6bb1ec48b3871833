"""TPM 2.0 key backend through tpm2-pytss (ESAPI) — CPython only (Raspberry Pi, PCs, swtpm).

    from edgepoi.keys import open_key
    key = open_key("tpm2:handle=0x81010001;tcti=swtpm:host=127.0.0.1,port=2321")
    sig = key.sign_digest(digest32)          # TPM2_Sign, ECDSA-SHA256 -> 64 bytes r||s
    ctr = open_counter("tpm2:nv=0x01500016;tcti=device:/dev/tpmrm0")
    seq = ctr.next()                         # TPM2_NV_Increment on an NV counter index

URI grammar: ``tpm2:`` followed by ``;``-separated ``name=value`` pairs (the value runs to the next
``;``, so TCTI strings keep their ``:`` and ``,``):

    handle=0x81xxxxxx   persistent handle of the signing key (default 0x81010001)
    tcti=CONF           TCTI as tpm2-tools writes it: ``device:/dev/tpmrm0`` (default, else
                        $TPM2TOOLS_TCTI / $TCTI), ``swtpm:host=H,port=P``, ``mssim:...``, ``tabrmd``
    parent=0x81xxxxxx   optional persistent parent (SRK); default: the standard ECC P-256 SRK
                        template re-created as a transient primary under the owner hierarchy
    nv=0x01xxxxxx       NV counter index (open_counter only)

The key is made on first use (create=True): TPM2_Create under the parent with fixedTPM|fixedParent|
sensitiveDataOrigin|userWithAuth|sign, ECC NIST P-256, scheme ECDSA-SHA256, then TPM2_EvictControl to
the handle; every transient handle is flushed (no resource manager needed). Owner and key auth values
are empty. An existing object at the handle that is not a fixedTPM P-256 signing key is refused.
"""
from edgepoi.keys import KeyBackendError, key_id_of

DEFAULT_HANDLE = 0x81010001
DEFAULT_TCTI = "device:/dev/tpmrm0"


def parse_uri(uri, allowed=("handle", "tcti", "parent", "nv")):
    """``tpm2:k=v;k=v`` -> dict of strings. Raises KeyBackendError on a malformed URI."""
    if not uri.startswith("tpm2:"):
        raise KeyBackendError("bad_uri", "not a tpm2: URI")
    out = {}
    for part in uri[5:].split(";"):
        if not part:
            continue
        if "=" not in part:
            raise KeyBackendError("bad_uri", "tpm2 URI part without '=': %r" % part)
        k, v = part.split("=", 1)
        k = k.strip().lower()
        if k not in allowed:
            raise KeyBackendError("bad_uri", "unknown tpm2 URI attribute %r (known: %s)"
                                  % (k, ", ".join(allowed)))
        out[k] = v.strip()
    return out


def _int(v, name, lo, hi):
    try:
        n = int(v, 0)
    except ValueError:
        raise KeyBackendError("bad_uri", "tpm2 %s must be an integer like 0x81010001" % name)
    if not lo <= n <= hi:
        raise KeyBackendError("bad_uri", "tpm2 %s 0x%08x outside 0x%08x..0x%08x" % (name, n, lo, hi))
    return n


def _tcti(attrs):
    import os
    return attrs.get("tcti") or os.environ.get("TPM2TOOLS_TCTI") or os.environ.get("TCTI") \
        or DEFAULT_TCTI


def _require():
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError:
        raise KeyBackendError("backend_unavailable",
                              "the tpm2 backend needs tpm2-pytss (pip install tpm2-pytss; "
                              "Debian libtss2-dev) on CPython")


def _connect(tcti):
    from tpm2_pytss import ESAPI
    try:
        return ESAPI(tcti)
    except Exception as e:  # TSS2_Exception, or TCTI load errors
        raise KeyBackendError("device_error", "cannot open TPM through TCTI %r: %s" % (tcti, e))


def _exists(ectx, handle):
    from tpm2_pytss.constants import TPM2_CAP
    _, data = ectx.get_capability(TPM2_CAP.HANDLES, handle, 1)
    handles = list(data.data.handles)
    return bool(handles) and int(handles[0]) == handle


def _pad32(b):
    b = bytes(b)
    if len(b) > 32:
        raise KeyBackendError("device_error", "TPM returned a %d-byte P-256 coordinate" % len(b))
    return b"\x00" * (32 - len(b)) + b


def _srk_template():
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC
    return TPM2B_PUBLIC.parse("ecc256:aes128cfb",
                              objectAttributes=TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS)


def _key_template():
    from tpm2_pytss.constants import TPMA_OBJECT
    from tpm2_pytss.types import TPM2B_PUBLIC
    attrs = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
             | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.SIGN_ENCRYPT)
    return TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attrs)


def _create_persistent(ectx, handle, parent):
    """Create the signing key under the parent and EvictControl it to handle; flush all transients."""
    from tpm2_pytss.constants import ESYS_TR
    from tpm2_pytss.types import TPM2B_SENSITIVE_CREATE
    flush = []
    try:
        if parent is None:
            prim = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), _srk_template(), ESYS_TR.OWNER)[0]
            flush.append(prim)
        else:
            if not _exists(ectx, parent):
                raise KeyBackendError("not_found", "tpm2 parent 0x%08x is not in the TPM" % parent)
            prim = ectx.tr_from_tpmpublic(parent)
        priv, pub = ectx.create(prim, TPM2B_SENSITIVE_CREATE(), _key_template())[:2]
        obj = ectx.load(prim, priv, pub)
        flush.append(obj)
        ectx.tr_close(ectx.evict_control(ESYS_TR.OWNER, obj, handle))
    finally:
        for h in flush:
            ectx.flush_context(h)


def _public_point(ectx, tr):
    from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC, TPMA_OBJECT
    area = ectx.read_public(tr)[0].publicArea
    a = area.objectAttributes
    if area.type != TPM2_ALG.ECC or area.parameters.eccDetail.curveID != TPM2_ECC.NIST_P256:
        raise KeyBackendError("wrong_curve", "tpm2 object is not an ECC NIST P-256 key")
    if not a & TPMA_OBJECT.SIGN_ENCRYPT or a & TPMA_OBJECT.RESTRICTED:
        raise KeyBackendError("wrong_key", "tpm2 object is not an unrestricted signing key")
    if not a & TPMA_OBJECT.FIXEDTPM or not a & TPMA_OBJECT.SENSITIVEDATAORIGIN:
        raise KeyBackendError("insecure_key", "tpm2 key is not fixedTPM|sensitiveDataOrigin "
                              "(it could have been imported or duplicated)")
    ecc = area.unique.ecc
    return b"\x04" + _pad32(ecc.x) + _pad32(ecc.y)


class TPM2Key:
    alg = -7
    backend = "tpm2"

    def __init__(self, tcti, handle, ectx, tr, point):
        self._tcti = tcti
        self.handle = handle
        self._ectx = ectx
        self._tr = tr
        self._pub = point
        self.key_id = key_id_of(point)

    def public_key(self):
        return self._pub

    def _sign_once(self, digest):
        from tpm2_pytss.constants import TPM2_ALG
        from tpm2_pytss.types import TPM2B_DIGEST, TPMT_SIG_SCHEME
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        sig = self._ectx.sign(self._tr, TPM2B_DIGEST(digest), scheme)
        if sig.sigAlg != TPM2_ALG.ECDSA:
            raise KeyBackendError("device_error", "TPM2_Sign returned a non-ECDSA signature")
        return _pad32(sig.signature.ecdsa.signatureR) + _pad32(sig.signature.ecdsa.signatureS)

    def sign_digest(self, digest):
        """TPM2_Sign(ECDSA, SHA-256) over a 32-byte digest -> 64 bytes r||s.

        One reconnect is tried when the TPM connection broke (TPM or TCTI restarted); the reopened key
        must have the same public point.
        """
        if self._ectx is None:
            raise KeyBackendError("closed", "tpm2 key is closed")
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise KeyBackendError("bad_digest", "sign_digest needs a 32-byte SHA-256 digest")
        digest = bytes(digest)
        try:
            return self._sign_once(digest)
        except KeyBackendError:
            raise
        except Exception:  # connection lost (TCTI I/O error) or TPM reset: reconnect once
            self._reopen()
        try:
            return self._sign_once(digest)
        except Exception as e:
            raise KeyBackendError("device_error", "TPM2_Sign failed: %s" % e)

    def _reopen(self):
        try:
            self._ectx.close()
        except Exception:  # noqa: BLE001 - the old context is broken anyway
            pass
        self._ectx = None
        ectx = _connect(self._tcti)
        try:
            tr = ectx.tr_from_tpmpublic(self.handle)
            if _public_point(ectx, tr) != self._pub:
                raise KeyBackendError("device_error", "tpm2 key at 0x%08x changed" % self.handle)
        except BaseException:
            ectx.close()
            raise
        self._ectx, self._tr = ectx, tr

    def close(self):
        if self._ectx is not None:
            ectx, self._ectx = self._ectx, None
            try:
                ectx.tr_close(self._tr)
            finally:
                ectx.close()


def open(uri, create=True):  # noqa: A001 - the backend interface is open(uri, create)
    """Open the persistent P-256 key named by a tpm2: URI, creating it on first use.

    Raises:
        KeyBackendError: bad URI, TPM unreachable, key missing (create=False), wrong key type.
    """
    _require()
    attrs = parse_uri(uri, ("handle", "tcti", "parent"))
    handle = _int(attrs.get("handle", hex(DEFAULT_HANDLE)), "handle", 0x81000000, 0x81FFFFFF)
    parent = attrs.get("parent")
    parent = None if parent is None else _int(parent, "parent", 0x81000000, 0x81FFFFFF)
    tcti = _tcti(attrs)
    ectx = _connect(tcti)
    try:
        if not _exists(ectx, handle):
            if not create:
                raise KeyBackendError("not_found", "no tpm2 key at 0x%08x (create=False)" % handle)
            _create_persistent(ectx, handle, parent)
        tr = ectx.tr_from_tpmpublic(handle)
        point = _public_point(ectx, tr)
        return TPM2Key(tcti, handle, ectx, tr, point)
    except KeyBackendError:
        ectx.close()
        raise
    except Exception as e:
        ectx.close()
        raise KeyBackendError("device_error", "tpm2: %s" % e)


class TPM2Counter:
    """A TPM NV counter index (TPM2_NT_COUNTER): monotonic in the TPM, never decreases or resets.

    next() increments and reads back, so it assumes one process owns the index (the device agent).
    """

    def __init__(self, ectx, tr, index):
        self._ectx = ectx
        self._tr = tr
        self.index = index

    def _read(self):
        return int.from_bytes(bytes(self._ectx.nv_read(self._tr, 8, 0)), "big")

    def next(self):
        try:
            self._ectx.nv_increment(self._tr)
            return self._read()
        except Exception as e:
            raise KeyBackendError("device_error", "tpm2 NV counter increment failed: %s" % e)

    def peek(self):
        """The last value next() returned (0 before the first next())."""
        from tpm2_pytss.constants import TPMA_NV
        pub = self._ectx.nv_read_public(self._tr)[0].nvPublic
        if not pub.attributes & TPMA_NV.WRITTEN:
            return 0
        return self._read()

    def close(self):
        if self._ectx is not None:
            ectx, self._ectx = self._ectx, None
            ectx.close()


def open_counter(uri, create=True):
    """Open (define on first use) the NV counter index named by ``tpm2:nv=0x01xxxxxx;tcti=...``."""
    _require()
    attrs = parse_uri(uri, ("nv", "tcti"))
    if "nv" not in attrs:
        raise KeyBackendError("bad_uri", "tpm2 counter URI needs nv=0x01xxxxxx")
    index = _int(attrs["nv"], "nv", 0x01000000, 0x01FFFFFF)
    ectx = _connect(_tcti(attrs))
    try:
        from tpm2_pytss.constants import TPM2_ALG, TPM2_NT, TPMA_NV
        from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC
        if not _exists(ectx, index):
            if not create:
                raise KeyBackendError("not_found", "no tpm2 NV index 0x%08x" % index)
            nvattrs = (TPM2_NT.COUNTER << TPMA_NV.TPM2_NT_SHIFT) | TPMA_NV.AUTHREAD \
                | TPMA_NV.AUTHWRITE | TPMA_NV.NO_DA
            pub = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC(
                nvIndex=index, nameAlg=TPM2_ALG.SHA256, attributes=nvattrs, dataSize=8))
            tr = ectx.nv_define_space(b"", pub)
        else:
            tr = ectx.tr_from_tpmpublic(index)
            nt = (int(ectx.nv_read_public(tr)[0].nvPublic.attributes) & TPMA_NV.TPM2_NT_MASK) \
                >> TPMA_NV.TPM2_NT_SHIFT
            if nt != TPM2_NT.COUNTER:
                raise KeyBackendError("wrong_key", "tpm2 NV index 0x%08x is not a counter" % index)
        return TPM2Counter(ectx, tr, index)
    except KeyBackendError:
        ectx.close()
        raise
    except Exception as e:
        ectx.close()
        raise KeyBackendError("device_error", "tpm2 NV counter: %s" % e)
