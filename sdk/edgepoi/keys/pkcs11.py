"""PKCS#11 key backend (HSMs, smart cards, SoftHSM2) through python-pkcs11 — CPython only.

The key is a non-extractable, sensitive P-256 key pair on a token, named by an RFC 7512 URI:

    from edgepoi.keys import open_key
    key = open_key("pkcs11:token=edgepoi;object=device-key"
                   "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234")
    sig = key.sign_digest(hashlib.sha256(b"msg").digest())   # 64 bytes r||s, CKM_ECDSA
    key.close()

URI (RFC 7512): path attributes ``token``, ``object`` (CKA_LABEL), ``id`` (CKA_ID, percent-encoded
bytes), ``serial`` (token serial), ``type`` (must be ``private`` when given); query attributes
``module-path`` (default: $EDGEPOI_PKCS11_MODULE), ``pin-value`` or ``pin-source=file:PATH``
(default: $EDGEPOI_PKCS11_PIN). With create=True a missing key pair is generated on the token
(CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE true, CKA_EXTRACTABLE false); an existing private key that is
extractable or not sensitive is refused.
"""
from edgepoi.keys import KeyBackendError, key_id_of

# DER of the secp256r1 (prime256v1) OID as CKA_EC_PARAMS.
_P256_PARAMS = b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07"


def parse_uri(uri):
    """Parse an RFC 7512 ``pkcs11:`` URI into (path_attrs, query_attrs), values percent-decoded.

    Raises:
        KeyBackendError: not a pkcs11 URI, or an attribute without ``=``.
    """
    from urllib.parse import unquote_to_bytes
    if not uri.startswith("pkcs11:"):
        raise KeyBackendError("bad_uri", "not a pkcs11: URI")
    rest = uri[len("pkcs11:"):]
    path, _, query = rest.partition("?")
    out = []
    for part, sep in ((path, ";"), (query, "&")):
        attrs = {}
        for item in part.split(sep) if part else ():
            if "=" not in item:
                raise KeyBackendError("bad_uri", "pkcs11 URI attribute without '=': %r" % item)
            k, v = item.split("=", 1)
            k = k.strip().lower()
            if k in attrs:
                raise KeyBackendError("bad_uri", "pkcs11 URI repeats attribute %r" % k)
            attrs[k] = unquote_to_bytes(v)
        out.append(attrs)
    return out[0], out[1]


def _text(b):
    return b.decode("utf-8") if b is not None else None


def _ec_point_to_sec1(der):
    """CKA_EC_POINT is normally a DER OCTET STRING wrapping the SEC1 point; a few tokens give it raw."""
    der = bytes(der)
    if len(der) == 67 and der[0] == 0x04 and der[1] == 0x41 and der[2] == 0x04:
        return der[2:]
    if len(der) == 65 and der[0] == 0x04:
        return der
    raise KeyBackendError("bad_public_key", "CKA_EC_POINT is not an uncompressed P-256 point (%d bytes)" % len(der))


class _Shared:
    """One logged-in R/W session per (module, token), shared by every key open on it.

    PKCS#11 login state belongs to the application, not the session: a second C_Login fails with
    CKR_USER_ALREADY_LOGGED_IN and closing one logged-in session logs all of them out. So keys on the
    same token share one session and the last close() closes it.
    """
    table = {}

    def __init__(self, key, session):
        self.key = key
        self.session = session
        self.refs = 0

    @classmethod
    def acquire(cls, module, token, pin):
        from pkcs11 import PKCS11Error
        name = (module, token.label, token.serial)
        sh = cls.table.get(name)
        if sh is None:
            try:
                session = token.open(user_pin=pin, rw=True)
            except PKCS11Error as e:
                raise KeyBackendError("login_failed", "pkcs11 login to token failed: %s"
                                      % type(e).__name__)
            sh = cls.table[name] = cls(name, session)
        sh.refs += 1
        return sh

    def release(self):
        self.refs -= 1
        if self.refs <= 0 and self.table.get(self.key) is self:
            del self.table[self.key]
            self.session.close()


class PKCS11Key:
    alg = -7
    backend = "pkcs11"

    def __init__(self, shared, priv, pub_point):
        self._session = shared
        self._priv = priv
        self._pub = pub_point
        self.key_id = key_id_of(pub_point)

    def public_key(self):
        return self._pub

    def sign_digest(self, digest):
        from pkcs11 import Mechanism, PKCS11Error
        if self._session is None:
            raise KeyBackendError("closed", "pkcs11 key is closed")
        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise KeyBackendError("bad_digest", "sign_digest needs a 32-byte SHA-256 digest")
        try:
            sig = self._priv.sign(bytes(digest), mechanism=Mechanism.ECDSA)
        except PKCS11Error as e:
            raise KeyBackendError("device_error", "pkcs11 C_Sign failed: %s" % type(e).__name__)
        if len(sig) != 64:
            raise KeyBackendError("device_error", "pkcs11 token returned a %d-byte ECDSA signature" % len(sig))
        return bytes(sig)

    def close(self):
        if self._session is not None:
            shared, self._session = self._session, None
            shared.release()


def _with(d, k, v):
    d = dict(d)
    d[k] = v
    return d


def _read_pin(query):
    import os
    if "pin-value" in query:
        return _text(query["pin-value"])
    src = _text(query.get("pin-source"))
    if src:
        path = src[5:] if src.startswith("file:") else src
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as e:
            raise KeyBackendError("bad_uri", "cannot read pin-source: %s" % e.strerror)
    return os.environ.get("EDGEPOI_PKCS11_PIN")


def open(uri, create=True):  # noqa: A001 - the backend interface is open(uri, create)
    """Open (and with create=True, generate if missing) the P-256 key named by a pkcs11: URI.

    Raises:
        KeyBackendError: bad URI, module/token not found, login failed, key missing (create=False),
        key of the wrong type or exportable.
    """
    import os
    try:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass, PKCS11Error
    except ImportError:
        raise KeyBackendError("backend_unavailable", "the pkcs11 backend needs python-pkcs11 (pip install python-pkcs11)")
    path, query = parse_uri(uri)
    if "type" in path and path["type"] != b"private":
        raise KeyBackendError("bad_uri", "pkcs11 URI type must be 'private' for a signing key")
    module = _text(query.get("module-path")) or os.environ.get("EDGEPOI_PKCS11_MODULE")
    if not module:
        raise KeyBackendError("bad_uri", "pkcs11 URI needs module-path (or set EDGEPOI_PKCS11_MODULE)")
    label = _text(path.get("object"))
    key_id = path.get("id")
    if label is None and key_id is None:
        raise KeyBackendError("bad_uri", "pkcs11 URI needs object= or id= to name the key")
    try:
        lib = pkcs11.lib(module)
    except (PKCS11Error, OSError, RuntimeError) as e:
        raise KeyBackendError("backend_unavailable", "cannot load PKCS#11 module %s: %s" % (module, e))
    sel = {}
    if "token" in path:
        sel["token_label"] = _text(path["token"])
    if "serial" in path:
        sel["token_serial"] = path["serial"]
    try:
        token = lib.get_token(**sel)
    except PKCS11Error as e:
        raise KeyBackendError("not_found", "pkcs11 token not found (%s): %s" % (sel, type(e).__name__))
    session = _Shared.acquire(module, token, _read_pin(query))
    shared, session = session, session.session
    try:
        find = {Attribute.KEY_TYPE: KeyType.EC}
        if label is not None:
            find[Attribute.LABEL] = label
        if key_id is not None:
            find[Attribute.ID] = key_id
        privs = list(session.get_objects(_with(find, Attribute.CLASS, ObjectClass.PRIVATE_KEY)))
        pubs = list(session.get_objects(_with(find, Attribute.CLASS, ObjectClass.PUBLIC_KEY)))
        if len(privs) > 1 or len(pubs) > 1:
            raise KeyBackendError("bad_uri", "pkcs11 URI matches more than one key; add id= or object=")
        if not privs:
            if not create:
                raise KeyBackendError("not_found", "pkcs11 key not found on token (create=False)")
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: _P256_PARAMS}, local=True)
            pub, priv = params.generate_keypair(
                store=True, label=label, id=key_id,
                public_template={Attribute.VERIFY: True},
                private_template={Attribute.SIGN: True, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True})
        else:
            priv = privs[0]
            if not pubs:
                raise KeyBackendError("not_found", "pkcs11 private key has no matching public key object")
            pub = pubs[0]
        if priv[Attribute.EXTRACTABLE] or not priv[Attribute.SENSITIVE]:
            raise KeyBackendError("insecure_key", "pkcs11 private key is exportable (CKA_EXTRACTABLE or not "
                                  "CKA_SENSITIVE); refusing to use it as a device key")
        if bytes(pub[Attribute.EC_PARAMS]) != _P256_PARAMS:
            raise KeyBackendError("wrong_curve", "pkcs11 key is not on P-256")
        point = _ec_point_to_sec1(pub[Attribute.EC_POINT])
        return PKCS11Key(shared, priv, point)
    except PKCS11Error as e:
        shared.release()
        raise KeyBackendError("device_error", "pkcs11 operation failed: %s" % type(e).__name__)
    except BaseException:
        shared.release()
        raise
