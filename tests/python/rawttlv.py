"""Minimal TTLV encoder/decoder for the few requests PyKMIP 0.11 cannot express.

PyKMIP has no Add Attribute payload, and at KMIP 2.0 it cannot encode custom (`x-`) attributes
(it maps every attribute name to a tag and fails on vendor attributes). Those requests are built
here and sent over PyKMIP's own TLS connection (`ProxyKmipClient.proxy.protocol`), so the
transport is still PyKMIP's. Tag numbers come from PyKMIP's `enums.Tags`.
"""

import struct

from kmip.core import enums

STRUCTURE = 0x01
INTEGER = 0x02
LONG_INTEGER = 0x03
BIG_INTEGER = 0x04
ENUMERATION = 0x05
BOOLEAN = 0x06
TEXT_STRING = 0x07
BYTE_STRING = 0x08
DATE_TIME = 0x09
INTERVAL = 0x0A

T = enums.Tags


class Item:
    """One TTLV item: tag (int), type (int), value (list of Items for structures)."""

    def __init__(self, tag, typ, value):
        self.tag = tag.value if isinstance(tag, enums.Tags) else tag
        self.typ = typ
        self.value = value

    def children(self, tag):
        tag = tag.value if isinstance(tag, enums.Tags) else tag
        return [c for c in self.value if c.tag == tag]

    def child(self, tag):
        found = self.children(tag)
        if not found:
            raise KeyError("no child 0x%06X in 0x%06X" % (tag if isinstance(tag, int) else tag.value, self.tag))
        return found[0]

    def opt(self, tag):
        found = self.children(tag)
        return found[0] if found else None


def structure(tag, items):
    return Item(tag, STRUCTURE, list(items))


def integer(tag, v):
    return Item(tag, INTEGER, v)


def enum(tag, v):
    return Item(tag, ENUMERATION, v.value if hasattr(v, "value") else v)


def text(tag, v):
    return Item(tag, TEXT_STRING, v)


def byte_string(tag, v):
    return Item(tag, BYTE_STRING, bytes(v))


def _pad(n):
    return (8 - n % 8) % 8


def encode(item):
    head = struct.pack(">I", item.tag)[1:] + bytes([item.typ])
    if item.typ == STRUCTURE:
        body = b"".join(encode(c) for c in item.value)
        return head + struct.pack(">I", len(body)) + body
    if item.typ in (INTEGER, ENUMERATION, INTERVAL):
        return head + struct.pack(">I", 4) + struct.pack(">I" if item.typ != INTEGER else ">i", item.value) + b"\0" * 4
    if item.typ in (LONG_INTEGER, DATE_TIME):
        return head + struct.pack(">I", 8) + struct.pack(">q", item.value)
    if item.typ == BOOLEAN:
        return head + struct.pack(">I", 8) + struct.pack(">Q", 1 if item.value else 0)
    if item.typ in (TEXT_STRING, BYTE_STRING):
        raw = item.value.encode("utf-8") if item.typ == TEXT_STRING else item.value
        return head + struct.pack(">I", len(raw)) + raw + b"\0" * _pad(len(raw))
    raise ValueError("cannot encode type 0x%02X" % item.typ)


def decode(data):
    item, end = _decode_at(bytes(data), 0)
    if end != len(data):
        raise ValueError("%d trailing bytes" % (len(data) - end))
    return item


def _decode_at(data, pos):
    tag = int.from_bytes(data[pos:pos + 3], "big")
    typ = data[pos + 3]
    length = struct.unpack(">I", data[pos + 4:pos + 8])[0]
    start = pos + 8
    body = data[start:start + length]
    if len(body) != length:
        raise ValueError("item 0x%06X truncated" % tag)
    if typ == STRUCTURE:
        children, p = [], start
        while p < start + length:
            child, p = _decode_at(data, p)
            children.append(child)
        return Item(tag, typ, children), start + length
    padded = length + _pad(length)
    if typ == INTEGER:
        value = struct.unpack(">i", body)[0]
    elif typ in (ENUMERATION, INTERVAL):
        value = struct.unpack(">I", body)[0]
    elif typ in (LONG_INTEGER, DATE_TIME):
        value = struct.unpack(">q", body)[0]
    elif typ == BOOLEAN:
        value = struct.unpack(">Q", body)[0] != 0
    elif typ == TEXT_STRING:
        value = body.decode("utf-8")
    else:
        value = bytes(body)
    return Item(tag, typ, value), start + padded


def is_v2(version):
    return version >= enums.KMIPVersion.KMIP_2_0


def protocol_version(version):
    major, minor = {
        enums.KMIPVersion.KMIP_1_0: (1, 0),
        enums.KMIPVersion.KMIP_1_1: (1, 1),
        enums.KMIPVersion.KMIP_1_2: (1, 2),
        enums.KMIPVersion.KMIP_1_3: (1, 3),
        enums.KMIPVersion.KMIP_1_4: (1, 4),
        enums.KMIPVersion.KMIP_2_0: (2, 0),
    }[version]
    return structure(T.PROTOCOL_VERSION, [
        integer(T.PROTOCOL_VERSION_MAJOR, major),
        integer(T.PROTOCOL_VERSION_MINOR, minor),
    ])


def request(version, items):
    """A Request Message; `items` is a list of (operation, batch item id or None, payload items)."""
    batch = []
    for op, batch_id, payload in items:
        fields = [enum(T.OPERATION, op)]
        if batch_id is not None:
            fields.append(byte_string(T.UNIQUE_BATCH_ITEM_ID, batch_id))
        fields.append(structure(T.REQUEST_PAYLOAD, payload))
        batch.append(structure(T.BATCH_ITEM, fields))
    header = structure(T.REQUEST_HEADER, [
        protocol_version(version),
        integer(T.BATCH_COUNT, len(batch)),
    ])
    return structure(T.REQUEST_MESSAGE, [header] + batch)


def custom_attribute(version, name, value):
    """An `x-`/`y-` text attribute: 1.x Attribute {Name, Value}; 2.x Vendor Attribute."""
    if is_v2(version):
        vendor, _, short = name.partition("-")
        return structure(T.ATTRIBUTE, [
            text(T.VENDOR_IDENTIFICATION, vendor),
            text(T.ATTRIBUTE_NAME, short),
            text(T.ATTRIBUTE_VALUE, value),
        ])
    return structure(T.ATTRIBUTE, [
        text(T.ATTRIBUTE_NAME, name),
        text(T.ATTRIBUTE_VALUE, value),
    ])


def _name_fields(value):
    return [
        text(T.NAME_VALUE, value),
        enum(T.NAME_TYPE, enums.NameType.UNINTERPRETED_TEXT_STRING),
    ]


def modify_name_payload(version, uid, old, new):
    """Modify Attribute replacing the Name `old` by `new`: 1.x names the instance by Attribute
    Index 0; 2.x by Current Attribute."""
    if is_v2(version):
        return [
            text(T.UNIQUE_IDENTIFIER, uid),
            structure(T.CURRENT_ATTRIBUTE, [structure(T.NAME, _name_fields(old))]),
            structure(T.NEW_ATTRIBUTE, [structure(T.NAME, _name_fields(new))]),
        ]
    return [
        text(T.UNIQUE_IDENTIFIER, uid),
        structure(T.ATTRIBUTE, [
            text(T.ATTRIBUTE_NAME, "Name"),
            integer(T.ATTRIBUTE_INDEX, 0),
            structure(T.ATTRIBUTE_VALUE, _name_fields(new)),
        ]),
    ]


def attribute_reference(version, name):
    """How Get Attributes names a custom attribute in `version`."""
    if is_v2(version):
        vendor, _, short = name.partition("-")
        return structure(T.ATTRIBUTE_REFERENCE, [
            text(T.VENDOR_IDENTIFICATION, vendor),
            text(T.ATTRIBUTE_NAME, short),
        ])
    return text(T.ATTRIBUTE_NAME, name)


def custom_attributes_of(version, payload):
    """Custom text attributes of a Get Attributes response payload, as {name: [values]}."""
    found = {}
    if is_v2(version):
        container = payload.opt(T.ATTRIBUTES)
        attrs = container.children(T.ATTRIBUTE) if container is not None else []
    else:
        attrs = payload.children(T.ATTRIBUTE)
    for a in attrs:
        vendor = a.opt(T.VENDOR_IDENTIFICATION)
        name = a.child(T.ATTRIBUTE_NAME).value
        if vendor is not None:
            name = vendor.value + "-" + name
        found.setdefault(name, []).append(a.child(T.ATTRIBUTE_VALUE).value)
    return found


def exchange(client, message):
    """Sends `message` over an open ProxyKmipClient's TLS connection; returns the decoded
    Response Message."""
    client.proxy.protocol.write(encode(message))
    return decode(bytes(client.proxy.protocol.read().buffer))


def batch_results(response):
    """[(status name, reason name or None, unique batch item id or None, payload or None)]."""
    out = []
    for item in response.children(T.BATCH_ITEM):
        status = enums.ResultStatus(item.child(T.RESULT_STATUS).value).name
        reason = item.opt(T.RESULT_REASON)
        batch_id = item.opt(T.UNIQUE_BATCH_ITEM_ID)
        out.append((
            status,
            enums.ResultReason(reason.value).name if reason is not None else None,
            batch_id.value if batch_id is not None else None,
            item.opt(T.RESPONSE_PAYLOAD),
        ))
    return out
