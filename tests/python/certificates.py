"""PyKMIP flows over certificates, driven by tests/certificates.rs.

Usage: certificates.py --host H --port P --ca CA --cert CERT --key KEY --version 1.2|2.0
                       --config-file EMPTY_FILE --flow NAME --cert-file DER --tag TEXT
                       [--issuer-dn HEX --serial HEX --serial-text TEXT --issuer-text TEXT]

Prints one JSON object on stdout: what each step saw; a step that fails unexpectedly ends the
flow with {"error": ..., "step": ...} and exit status 1.
"""

import argparse
import binascii
import json
import sys
import traceback

from kmip.core import enums
from kmip.core.factories import attributes as attribute_factories
from kmip.pie import objects as pobjects
from kmip.pie.client import ProxyKmipClient

import rawttlv
from rawttlv import T

VERSIONS = {
    "1.2": enums.KMIPVersion.KMIP_1_2,
    "1.4": enums.KMIPVersion.KMIP_1_4,
    "2.0": enums.KMIPVersion.KMIP_2_0,
}

AF = attribute_factories.AttributeFactory()


def raw_locate(c, version, attribute_tag, v1_name, value_items):
    """Locate by one structured attribute PyKMIP cannot build; returns the identifiers."""
    if rawttlv.is_v2(version):
        payload = [rawttlv.structure(T.ATTRIBUTES, [rawttlv.structure(attribute_tag, value_items)])]
    else:
        payload = [rawttlv.structure(T.ATTRIBUTE, [
            rawttlv.text(T.ATTRIBUTE_NAME, v1_name),
            rawttlv.structure(T.ATTRIBUTE_VALUE, value_items),
        ])]
    msg = rawttlv.request(version, [(enums.Operation.LOCATE, None, payload)])
    [(status, reason, _, body)] = rawttlv.batch_results(rawttlv.exchange(c, msg))
    if status != "SUCCESS":
        return {"status": status, "reason": reason}
    return [u.value for u in body.children(T.UNIQUE_IDENTIFIER)]


def register_get_locate(a, out):
    version = VERSIONS[a.version]
    der = open(a.cert_file, "rb").read()
    name = "cert-" + a.tag
    with ProxyKmipClient(hostname=a.host, port=a.port, cert=a.cert, key=a.key, ca=a.ca,
                         config_file=a.config_file, kmip_version=version) as c:
        out["step"] = "register"
        uid = c.register(pobjects.X509Certificate(der, name=name))
        out["uid"] = uid
        out["step"] = "get"
        got = c.get(uid)
        out["got_type"] = type(got).__name__
        out["got_der"] = binascii.hexlify(got.value).decode()
        out["step"] = "locate by type, length and name"
        out["locate_type_length_name"] = c.locate(attributes=[
            AF.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.CERTIFICATE),
            AF.create_attribute(enums.AttributeType.CERTIFICATE_TYPE, enums.CertificateType.X_509),
            AF.create_attribute(enums.AttributeType.CERTIFICATE_LENGTH, len(der)),
            AF.create_attribute(enums.AttributeType.NAME, name),
        ])
        out["locate_wrong_length"] = c.locate(attributes=[
            AF.create_attribute(enums.AttributeType.CERTIFICATE_LENGTH, len(der) + 1),
            AF.create_attribute(enums.AttributeType.NAME, name),
        ])
        out["step"] = "locate by X.509 Certificate Identifier"
        issuer = binascii.unhexlify(a.issuer_dn)
        serial = binascii.unhexlify(a.serial)
        ident = lambda s: [
            rawttlv.byte_string(T.ISSUER_DISTINGUISHED_NAME, issuer),
            rawttlv.byte_string(T.CERTIFICATE_SERIAL_NUMBER, s),
        ]
        out["locate_x509_identifier"] = raw_locate(
            c, version, T.X_509_CERTIFICATE_IDENTIFIER, "X.509 Certificate Identifier", ident(serial))
        out["locate_x509_other_serial"] = raw_locate(
            c, version, T.X_509_CERTIFICATE_IDENTIFIER, "X.509 Certificate Identifier",
            ident(serial + b"\x00"))
        if not rawttlv.is_v2(version):
            out["step"] = "locate by Certificate Identifier (1.x)"
            out["locate_1x_identifier"] = raw_locate(
                c, version, T.CERTIFICATE_IDENTIFIER, "Certificate Identifier", [
                    rawttlv.text(T.ISSUER, a.issuer_text),
                    rawttlv.text(T.SERIAL_NUMBER, a.serial_text),
                ])
    out["step"] = "done"


FLOWS = {"register_get_locate": register_get_locate}


def main():
    p = argparse.ArgumentParser()
    for arg in ["--host", "--ca", "--cert", "--key", "--version", "--config-file", "--flow",
                "--cert-file", "--tag", "--issuer-dn", "--serial", "--serial-text",
                "--issuer-text"]:
        p.add_argument(arg)
    p.add_argument("--port", type=int)
    a = p.parse_args()
    out = {"version": a.version}
    try:
        FLOWS[a.flow](a, out)
    except Exception as e:  # the Rust side shows where it stopped
        out["error"] = "%s: %s" % (type(e).__name__, e)
        out["trace"] = traceback.format_exc()
        print(json.dumps(out))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
