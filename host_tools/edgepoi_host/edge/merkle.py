"""RFC 6962 / RFC 9162 Merkle trees over SHA-256: root, audit paths, inclusion verification.

Usage::

    from edgepoi_host.edge import merkle
    tree = merkle.Tree([b"leaf data 0", b"leaf data 1", b"leaf data 2"])
    root = tree.root                        # MTH(D[n]), 32 bytes
    path = tree.path(1)                     # audit path for leaf 1, bottom up (RFC 6962 section 2.1.1)
    merkle.verify_inclusion(b"leaf data 1", 1, 3, path, root)    # True

Hashes: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right), the empty tree's root is
SHA-256(""). The RFC defines the tree recursively, splitting n leaves at k, the largest power of two
smaller than n. Building it bottom up, pairing neighbours level by level and carrying an unpaired last
node up unchanged, gives exactly that tree, so ``Tree`` keeps every level (about 2n hashes) and answers
each audit path in O(log n) without recomputing anything.
"""
import hashlib

_sha = hashlib.sha256
EMPTY_ROOT = _sha(b"").digest()


class MerkleError(ValueError):
    """Bad index, leaf count or proof shape."""


def leaf_hash(data):
    return _sha(b"\x00" + bytes(data)).digest()


def node_hash(left, right):
    return _sha(b"\x01" + left + right).digest()


class Tree:
    """All levels of the tree over ``leaves`` (a sequence of bytes: leaf *data*, hashed here)."""

    def __init__(self, leaves):
        level = [leaf_hash(d) for d in leaves]
        self.size = len(level)
        self.levels = [level]
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) & 1:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def root(self):
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def path(self, index):
        """Audit path PATH(index, D[n]) as a list of 32-byte hashes, from the leaf's sibling upwards."""
        if not 0 <= index < self.size:
            raise MerkleError("leaf index %d outside a tree of %d leaves" % (index, self.size))
        out = []
        for level in self.levels[:-1]:
            sib = index ^ 1
            if sib < len(level):
                out.append(level[sib])
            index >>= 1
        return out


def root_of(leaves):
    """MTH(D[n]) of the given leaf data."""
    return Tree(leaves).root


def root_from_path(leaf_data_hash, index, size, path):
    """Recompute the root from a leaf hash and its audit path (RFC 9162 section 2.1.3.2).

    Raises MerkleError if the path has the wrong length for (index, size).
    """
    if not 0 <= index < size:
        raise MerkleError("leaf index %d outside a tree of %d leaves" % (index, size))
    fn, sn = index, size - 1
    r = leaf_data_hash
    for p in path:
        if len(p) != 32:
            raise MerkleError("audit path entries must be 32 bytes")
        if sn == 0:
            raise MerkleError("audit path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError("audit path too short")
    return r


def verify_inclusion(leaf_data, index, size, path, root):
    """True when ``leaf_data`` is leaf ``index`` of the ``size``-leaf tree with ``root``; never raises
    for a wrong proof (returns False)."""
    try:
        return root_from_path(leaf_hash(leaf_data), index, size, [bytes(p) for p in path]) == bytes(root)
    except (MerkleError, TypeError, ValueError):
        return False
