"""Real-client flows against a running kmip-gateway, driven by the Rust tests in tests/pykmip.rs.

Usage: flows.py --host H --port P --ca CA --cert CERT --key KEY --version 1.2|1.4|2.0
                --config-file EMPTY_FILE --flow NAME [--tag TEXT]

Prints one JSON object on stdout: what each step saw. A step that fails unexpectedly ends the
flow with {"error": ..., "step": ...} and exit status 1, so the Rust side can show where.
"""

import argparse
import binascii
import json
import ssl
import sys
import traceback

from kmip.core import enums
from kmip.core import objects as cobjects
from kmip.core import attributes as cattributes
from kmip.core.factories import attributes as attribute_factories
from kmip.pie import exceptions
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


class Flow:
    def __init__(self, args):
        self.args = args
        self.version = VERSIONS[args.version]
        self.out = {"version": args.version}
        self.step = "start"

    def client(self):
        a = self.args
        return ProxyKmipClient(
            hostname=a.host,
            port=a.port,
            cert=a.cert,
            key=a.key,
            ca=a.ca,
            config_file=a.config_file,
            kmip_version=self.version,
        )

    def v2(self):
        return rawttlv.is_v2(self.version)

    def name_attr(self, name):
        return AF.create_attribute(enums.AttributeType.NAME, name)

    def failure_of(self, fn):
        """Runs fn expecting a KMIP failure; returns {status, reason} or {"succeeded": True}."""
        try:
            fn()
        except exceptions.KmipOperationFailure as e:
            return {"status": e.status.name, "reason": e.reason.name}
        return {"succeeded": True}

    def raw_get_custom(self, c, uid, name):
        msg = rawttlv.request(self.version, [(
            enums.Operation.GET_ATTRIBUTES, None,
            [rawttlv.text(T.UNIQUE_IDENTIFIER, uid), rawttlv.attribute_reference(self.version, name)],
        )])
        [(status, reason, _, payload)] = rawttlv.batch_results(rawttlv.exchange(c, msg))
        result = {"status": status, "reason": reason}
        if payload is not None:
            result["attributes"] = rawttlv.custom_attributes_of(self.version, payload)
        return result

    # --- 1. FlashArray (RDL): a named AES-256 key, fetched again on a new connection --------------
    def flasharray(self):
        name = "purefa-rdl-" + self.args.tag
        flt = [self.name_attr(name)]
        with self.client() as c:
            self.step = "locate before create"
            self.out["locate_before"] = c.locate(attributes=flt)
            self.step = "create"
            uid = c.create(enums.CryptographicAlgorithm.AES, 256, name=name)
            self.out["uid"] = uid
            self.step = "activate"
            c.activate(uid)
            self.step = "locate after create"
            self.out["locate_after"] = c.locate(attributes=flt)
        with self.client() as c:
            self.step = "get on a new connection"
            key = c.get(uid)
            self.out["get"] = {
                "object_type": type(key).__name__,
                "length_bytes": len(key.value),
                "algorithm": key.cryptographic_algorithm.name,
                "names": list(key.names),
            }
            self.step = "revoke"
            c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
            self.step = "destroy"
            c.destroy(uid)
            self.step = "get after destroy"
            self.out["get_after_destroy"] = self.failure_of(lambda: c.get(uid))
            self.step = "locate after destroy"
            self.out["locate_after_destroy"] = c.locate(attributes=flt)

    # --- 2. SASED: Secret Data (Password) with Object Group and x- attributes ----------------------
    def sased(self):
        name = "sased-" + self.args.tag
        group = "sased-group-" + self.args.tag
        secret = ("pw-" + self.args.tag).encode()
        custom = {"x-SASED-Drive": "drive-" + self.args.tag, "x-SASED-Slot": "7"}
        with self.client() as c:
            self.step = "locate by name before register"
            self.out["locate_before"] = c.locate(attributes=[self.name_attr(name)])
            self.step = "register"
            if self.v2():
                # PyKMIP cannot encode Vendor Attributes at 2.0: raw Register, PyKMIP's connection.
                attrs = [
                    rawttlv.structure(T.NAME, [
                        rawttlv.text(T.NAME_VALUE, name),
                        rawttlv.enum(T.NAME_TYPE, enums.NameType.UNINTERPRETED_TEXT_STRING),
                    ]),
                    rawttlv.text(T.OBJECT_GROUP, group),
                    rawttlv.integer(T.CRYPTOGRAPHIC_USAGE_MASK, enums.CryptographicUsageMask.EXPORT.value),
                ] + [rawttlv.custom_attribute(self.version, k, v) for k, v in custom.items()]
                msg = rawttlv.request(self.version, [(enums.Operation.REGISTER, None, [
                    rawttlv.enum(T.OBJECT_TYPE, enums.ObjectType.SECRET_DATA),
                    rawttlv.structure(T.ATTRIBUTES, attrs),
                    rawttlv.structure(T.SECRET_DATA, [
                        rawttlv.enum(T.SECRET_DATA_TYPE, enums.SecretDataType.PASSWORD),
                        rawttlv.structure(T.KEY_BLOCK, [
                            rawttlv.enum(T.KEY_FORMAT_TYPE, enums.KeyFormatType.OPAQUE),
                            rawttlv.structure(T.KEY_VALUE, [rawttlv.byte_string(T.KEY_MATERIAL, secret)]),
                        ]),
                    ]),
                ])])
                [(status, reason, _, payload)] = rawttlv.batch_results(rawttlv.exchange(c, msg))
                if status != "SUCCESS":
                    raise RuntimeError("register failed: %s" % reason)
                uid = payload.child(T.UNIQUE_IDENTIFIER).value
            else:
                # PyKMIP's own Register encoding, with the custom attributes in its Template-Attribute.
                pie_secret = pobjects.SecretData(secret, enums.SecretDataType.PASSWORD)
                core_secret = c.object_factory.convert(pie_secret)
                template = cobjects.TemplateAttribute(attributes=[
                    self.name_attr(name),
                    AF.create_attribute(enums.AttributeType.OBJECT_GROUP, group),
                    AF.create_attribute(
                        enums.AttributeType.CRYPTOGRAPHIC_USAGE_MASK,
                        [enums.CryptographicUsageMask.EXPORT],
                    ),
                ] + [
                    cobjects.Attribute(
                        attribute_name=cobjects.Attribute.AttributeName(k),
                        attribute_value=cattributes.CustomAttribute(v),
                    )
                    for k, v in custom.items()
                ])
                result = c.proxy.register(enums.ObjectType.SECRET_DATA, template, core_secret)
                if result.result_status.value != enums.ResultStatus.SUCCESS:
                    raise RuntimeError("register failed: %s" % result.result_reason.value)
                uid = result.uuid
            self.out["uid"] = uid
        with self.client() as c:
            self.step = "locate by object group"
            self.out["locate_group"] = c.locate(
                attributes=[AF.create_attribute(enums.AttributeType.OBJECT_GROUP, group)]
            )
            self.step = "get attributes x-"
            self.out["custom"] = {k: self.raw_get_custom(c, uid, k) for k in custom}
            self.step = "get attributes x- (missing)"
            self.out["custom_missing"] = self.raw_get_custom(c, uid, "x-SASED-Never-Set")
            if not self.v2():
                self.step = "get attributes x- through PyKMIP"
                _, attrs = c.get_attributes(uid, list(custom))
                self.out["custom_pykmip"] = {
                    a.attribute_name.value: a.attribute_value.value for a in attrs
                }
            self.step = "get"
            obj = c.get(uid)
            self.out["get"] = {
                "object_type": type(obj).__name__,
                "data_type": obj.data_type.name,
                "value_hex": binascii.hexlify(obj.value).decode(),
                "expected_hex": binascii.hexlify(secret).decode(),
            }
            self.step = "destroy"
            c.destroy(uid)
            self.out["locate_group_after_destroy"] = c.locate(
                attributes=[AF.create_attribute(enums.AttributeType.OBJECT_GROUP, group)]
            )

    # --- 3. vCenter 7.0.3 ----------------------------------------------------------------------------
    def vcenter(self):
        custom = [
            ("x-Product_Version", "7.0.3"),
            ("x-Vendor", "VMware, Inc."),
            ("x-Product", "VMware vSphere"),
        ]
        with self.client() as c:
            self.step = "discover versions"
            dv = c.proxy.discover_versions()
            self.out["discover_versions"] = {
                "status": dv.result_status.value.name,
                "versions": ["%d.%d" % (v.major, v.minor) for v in (dv.protocol_versions or [])],
            }
            self.step = "query"
            q = c.proxy.query(query_functions=[
                enums.QueryFunction.QUERY_OPERATIONS,
                enums.QueryFunction.QUERY_OBJECTS,
                enums.QueryFunction.QUERY_SERVER_INFORMATION,
            ])
            self.out["query"] = {
                "status": q.result_status.value.name,
                "operations": sorted(o.name for o in (q.operations or [])),
                "object_types": sorted(o.name for o in (q.object_types or [])),
                "vendor": q.vendor_identification,
            }
            self.step = "create without name"
            uid = c.create(
                enums.CryptographicAlgorithm.AES, 256,
                cryptographic_usage_mask=[
                    enums.CryptographicUsageMask.ENCRYPT,
                    enums.CryptographicUsageMask.DECRYPT,
                ],
            )
            self.out["uid"] = uid
            self.step = "get attributes of a missing x-Product_Version"
            self.out["missing"] = self.raw_get_custom(c, uid, "x-Product_Version")
            if not self.v2():
                _, attrs = c.get_attributes(uid, ["x-Product_Version"])
                self.out["missing_pykmip"] = len(attrs)
            self.step = "add attribute x3 in one message"
            ids = [("%08d" % i).encode() for i in (1, 2, 3)]
            items = []
            for batch_id, (name, value) in zip(ids, custom):
                attr = rawttlv.custom_attribute(self.version, name, value)
                if self.v2():
                    attr = rawttlv.structure(T.NEW_ATTRIBUTE, [attr])
                items.append((enums.Operation.ADD_ATTRIBUTE, batch_id,
                              [rawttlv.text(T.UNIQUE_IDENTIFIER, uid), attr]))
            response = rawttlv.exchange(c, rawttlv.request(self.version, items))
            header = response.child(T.RESPONSE_HEADER)
            results = rawttlv.batch_results(response)
            self.out["batch"] = {
                "batch_count": header.child(T.BATCH_COUNT).value,
                "items": [
                    {"status": s, "reason": r, "batch_id": b.decode() if b is not None else None}
                    for s, r, b, _ in results
                ],
                "sent_ids": [i.decode() for i in ids],
            }
            self.step = "get attributes after add"
            self.out["after_add"] = {
                name: self.raw_get_custom(c, uid, name).get("attributes", {}).get(name, [])
                for name, _ in custom
            }
            self.step = "get"
            key = c.get(uid)
            self.out["get"] = {"object_type": type(key).__name__, "length_bytes": len(key.value)}

    # --- 4. Synology DSM style: one TLS connection per operation ------------------------------------
    def synology(self):
        name = binascii.hexlify(("syno-" + self.args.tag).encode()).decode()
        secret = ("syno-pass-" + self.args.tag).encode()
        conns = [0]

        def op(step, fn):
            self.step = step
            conns[0] += 1
            with self.client() as c:
                return fn(c)

        def register(c):
            obj = pobjects.SecretData(secret, enums.SecretDataType.PASSWORD, name=name)
            if not self.v2():
                obj.operation_policy_name = "default"
            return c.register(obj)

        for i in range(2):
            op("query %d" % i, lambda c: c.proxy.query(query_functions=[enums.QueryFunction.QUERY_OPERATIONS]))
        self.out["locate_before"] = op("locate", lambda c: c.locate(attributes=[self.name_attr(name)]))
        uid = op("register", register)
        self.out["uid"] = uid
        self.out["locate_registered"] = op("locate", lambda c: c.locate(attributes=[self.name_attr(name)]))

        # Synology renames the object right after Register; PyKMIP has no 1.x Modify Attribute.
        renamed = binascii.hexlify(("syno-renamed-" + self.args.tag).encode()).decode()

        def modify(c):
            msg = rawttlv.request(self.version, [(
                enums.Operation.MODIFY_ATTRIBUTE, None,
                rawttlv.modify_name_payload(self.version, uid, name, renamed),
            )])
            [(status, reason, _, payload)] = rawttlv.batch_results(rawttlv.exchange(c, msg))
            result = {"status": status, "reason": reason}
            echoed = payload.opt(T.ATTRIBUTE) if payload is not None else None
            if echoed is not None:
                result["echoed"] = {
                    "name": echoed.child(T.ATTRIBUTE_NAME).value,
                    "value": echoed.child(T.ATTRIBUTE_VALUE).child(T.NAME_VALUE).value,
                }
            return result

        self.out["modify_name"] = op("modify name", modify)
        self.out["renamed"] = renamed
        self.out["locate_old_name"] = op("locate", lambda c: c.locate(attributes=[self.name_attr(name)]))
        self.out["locate_after"] = op("locate", lambda c: c.locate(attributes=[self.name_attr(renamed)]))
        op("activate", lambda c: c.activate(uid))
        self.out["attribute_list"] = sorted(op("get attribute list", lambda c: c.get_attribute_list(uid)))
        if not self.v2():
            _, attrs = op("get attributes", lambda c: c.get_attributes(uid, ["Operation Policy Name", "State"]))
            self.out["attributes"] = {
                a.attribute_name.value: (
                    a.attribute_value.value.name
                    if hasattr(a.attribute_value.value, "name") else a.attribute_value.value
                )
                for a in attrs
            }
        obj = op("get", lambda c: c.get(uid))
        self.out["get_matches"] = obj.value == secret
        op("revoke", lambda c: c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid))
        op("destroy", lambda c: c.destroy(uid))
        self.out["get_after_destroy"] = op("get after destroy", lambda c: self.failure_of(lambda: c.get(uid)))
        self.out["connections"] = conns[0]

    # --- 6. Key pairs: Create Key Pair, Sign, Signature Verify, Get of the public key -----------------
    def keypair(self):
        name = "pair-" + self.args.tag
        data = ("signed at KMIP " + self.args.tag).encode()
        params = {
            "cryptographic_algorithm": enums.CryptographicAlgorithm.RSA,
            "padding_method": enums.PaddingMethod.PSS,
            "hashing_algorithm": enums.HashingAlgorithm.SHA_256,
        }
        with self.client() as c:
            self.step = "create key pair"
            public_uid, private_uid = c.create_key_pair(
                enums.CryptographicAlgorithm.RSA, 2048,
                public_name=name + "-public",
                public_usage_mask=[enums.CryptographicUsageMask.VERIFY],
                private_name=name + "-private",
                private_usage_mask=[enums.CryptographicUsageMask.SIGN],
            )
            self.out["public_uid"] = public_uid
            self.out["private_uid"] = private_uid
            self.step = "activate"
            c.activate(public_uid)
            c.activate(private_uid)
            self.step = "sign"
            signature = c.sign(data, uid=private_uid, cryptographic_parameters=params)
            self.out["signature_bytes"] = len(signature)
            self.step = "signature verify"
            self.out["verify"] = c.signature_verify(
                data, signature, uid=public_uid, cryptographic_parameters=params).name
            self.out["verify_other_data"] = c.signature_verify(
                data + b"!", signature, uid=public_uid, cryptographic_parameters=params).name
            self.step = "sign with the public key"
            self.out["sign_with_public"] = self.failure_of(
                lambda: c.sign(data, uid=public_uid, cryptographic_parameters=params))
            self.step = "get public key"
            public = c.get(public_uid)
            self.out["public"] = {
                "object_type": type(public).__name__,
                "format": public.key_format_type.name,
                "algorithm": public.cryptographic_algorithm.name,
                "length": public.cryptographic_length,
            }
            self.step = "locate private keys by name"
            self.out["locate_private"] = c.locate(attributes=[
                self.name_attr(name + "-private"),
                AF.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.PRIVATE_KEY),
            ])
            self.step = "revoke and destroy"
            for uid in (private_uid, public_uid):
                c.revoke(enums.RevocationReasonCode.CESSATION_OF_OPERATION, uid)
                c.destroy(uid)

    # --- 7. Certificates: Register an X.509 certificate, Get it back, its derived attributes -------
    def certificate(self):
        with open(self.args.cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        name = "cert-" + self.args.tag
        with self.client() as c:
            self.step = "register certificate"
            uid = c.register(pobjects.X509Certificate(der, name=name))
            self.out["uid"] = uid
            self.step = "get certificate"
            cert = c.get(uid)
            self.out["certificate"] = {
                "object_type": type(cert).__name__,
                "certificate_type": cert.certificate_type.name,
                "same_der": bytes(cert.value) == der,
            }
            self.step = "get attribute list"
            self.out["attribute_names"] = sorted(str(n) for n in c.get_attribute_list(uid))
            self.step = "locate certificates by name"
            self.out["locate"] = c.locate(attributes=[
                self.name_attr(name),
                AF.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.CERTIFICATE),
            ])
            self.step = "destroy"
            c.destroy(uid)
            self.out["get_after_destroy"] = self.failure_of(lambda: c.get(uid))

    # --- Split keys: PyKMIP registers the parts of an XOR split and reads them back -------------
    def splitkey(self):
        secret = bytes(range(1, 17))
        pad = bytes((b * 7 + 3) % 256 for b in range(16))
        shares = [pad, bytes(a ^ b for a, b in zip(secret, pad))]
        uids = []
        with self.client() as c:
            for i, share in enumerate(shares, start=1):
                self.step = "register part %d" % i
                part = pobjects.SplitKey(
                    cryptographic_algorithm=enums.CryptographicAlgorithm.AES,
                    cryptographic_length=128,
                    key_value=share,
                    name="split-%s-%d" % (self.args.tag, i),
                    split_key_parts=2,
                    key_part_identifier=i,
                    split_key_threshold=2,
                    split_key_method=enums.SplitKeyMethod.XOR,
                )
                uids.append(c.register(part))
            self.step = "get the parts"
            parts = [c.get(uid) for uid in uids]
            self.out["parts"] = [{
                "object_type": type(p).__name__,
                "identifier": p.key_part_identifier,
                "parts": p.split_key_parts,
                "threshold": p.split_key_threshold,
                "method": p.split_key_method.name,
                "algorithm": p.cryptographic_algorithm.name,
                "length": p.cryptographic_length,
            } for p in parts]
            joined = bytes(a ^ b for a, b in zip(parts[0].value, parts[1].value))
            self.out["joins_to_secret"] = joined == secret
            self.step = "locate split keys"
            found = c.locate(attributes=[
                AF.create_attribute(enums.AttributeType.OBJECT_TYPE, enums.ObjectType.SPLIT_KEY),
            ])
            self.out["located"] = sorted(u for u in found if u in uids) == sorted(uids)
            self.step = "destroy"
            for uid in uids:
                c.destroy(uid)

    # --- 5. A probe for authentication tests: one Query, report what happened -----------------------
    def probe(self):
        try:
            with self.client() as c:
                q = c.proxy.query(query_functions=[enums.QueryFunction.QUERY_SERVER_INFORMATION])
                self.out["answered"] = True
                self.out["status"] = q.result_status.value.name
        except Exception as e:  # noqa: BLE001 -- any failure to get an answer is the result
            self.out["answered"] = False
            self.out["exception"] = "%s: %s" % (type(e).__name__, e)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--version", choices=sorted(VERSIONS), required=True)
    p.add_argument("--config-file", required=True)
    p.add_argument("--flow", required=True,
                   choices=["flasharray", "sased", "vcenter", "synology", "probe", "keypair",
                            "certificate", "splitkey"])
    p.add_argument("--tag", default="t")
    args = p.parse_args()
    flow = Flow(args)
    try:
        getattr(flow, args.flow)()
    except Exception as e:  # noqa: BLE001 -- reported to the Rust side with the failing step
        flow.out["error"] = "%s: %s" % (type(e).__name__, e)
        flow.out["step"] = flow.step
        flow.out["traceback"] = traceback.format_exc()
        print(json.dumps(flow.out))
        return 1
    print(json.dumps(flow.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
