//! KMIP enumerations used by the typed model. Each has an `Other(u32)` fallback: clients send
//! values of newer specifications and extension values (`0x8XXXXXXX`), which must survive parsing
//! so the server can answer with a precise error instead of failing the whole message.
//!
//! Values follow the KMIP 1.4 and 2.1 enumeration tables (section 9.1.3.2 of 1.4, 11 of 2.1),
//! including the 1.x values that 2.x deprecated (Template object type, ECDSA/ECDH/ECMQV
//! transparent key formats, Query Extension List/Map).

/// Conversion between a KMIP Enumeration value and its Rust enum.
pub trait KmipEnum: Copy {
    fn from_u32(value: u32) -> Self;
    fn to_u32(self) -> u32;
}

macro_rules! kmip_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)*
            /// A value this model does not name (newer specification or extension range).
            Other(u32),
        }

        impl KmipEnum for $name {
            fn from_u32(value: u32) -> Self {
                match value {
                    $($value => $name::$variant,)*
                    other => $name::Other(other),
                }
            }

            fn to_u32(self) -> u32 {
                match self {
                    $($name::$variant => $value,)*
                    $name::Other(value) => value,
                }
            }
        }
    };
}

kmip_enum! {
    /// Operation codes of KMIP 1.0–2.1 (the `Operation` of a batch item).
    Operation {
        Create = 0x00000001,
        CreateKeyPair = 0x00000002,
        Register = 0x00000003,
        ReKey = 0x00000004,
        DeriveKey = 0x00000005,
        Certify = 0x00000006,
        ReCertify = 0x00000007,
        Locate = 0x00000008,
        Check = 0x00000009,
        Get = 0x0000000A,
        GetAttributes = 0x0000000B,
        GetAttributeList = 0x0000000C,
        AddAttribute = 0x0000000D,
        ModifyAttribute = 0x0000000E,
        DeleteAttribute = 0x0000000F,
        ObtainLease = 0x00000010,
        GetUsageAllocation = 0x00000011,
        Activate = 0x00000012,
        Revoke = 0x00000013,
        Destroy = 0x00000014,
        Archive = 0x00000015,
        Recover = 0x00000016,
        Validate = 0x00000017,
        Query = 0x00000018,
        Cancel = 0x00000019,
        Poll = 0x0000001A,
        Notify = 0x0000001B,
        Put = 0x0000001C,
        ReKeyKeyPair = 0x0000001D,
        DiscoverVersions = 0x0000001E,
        Encrypt = 0x0000001F,
        Decrypt = 0x00000020,
        Sign = 0x00000021,
        SignatureVerify = 0x00000022,
        Mac = 0x00000023,
        MacVerify = 0x00000024,
        RngRetrieve = 0x00000025,
        RngSeed = 0x00000026,
        Hash = 0x00000027,
        CreateSplitKey = 0x00000028,
        JoinSplitKey = 0x00000029,
        Import = 0x0000002A,
        Export = 0x0000002B,
        Log = 0x0000002C,
        Login = 0x0000002D,
        Logout = 0x0000002E,
        DelegatedLogin = 0x0000002F,
        AdjustAttribute = 0x00000030,
        SetAttribute = 0x00000031,
        SetEndpointRole = 0x00000032,
        Pkcs11 = 0x00000033,
        Interop = 0x00000034,
        ReProvision = 0x00000035,
        SetDefaults = 0x00000036,
        SetConstraints = 0x00000037,
        GetConstraints = 0x00000038,
        QueryAsynchronousRequests = 0x00000039,
        Process = 0x0000003A,
        Ping = 0x0000003B,
    }
}

kmip_enum! {
    /// Result Status of a response batch item.
    ResultStatus {
        Success = 0x00000000,
        OperationFailed = 0x00000001,
        OperationPending = 0x00000002,
        OperationUndone = 0x00000003,
    }
}

kmip_enum! {
    /// Result Reason of a failed response batch item.
    ResultReason {
        ItemNotFound = 0x00000001,
        ResponseTooLarge = 0x00000002,
        AuthenticationNotSuccessful = 0x00000003,
        InvalidMessage = 0x00000004,
        OperationNotSupported = 0x00000005,
        MissingData = 0x00000006,
        InvalidField = 0x00000007,
        FeatureNotSupported = 0x00000008,
        OperationCanceledByRequester = 0x00000009,
        CryptographicFailure = 0x0000000A,
        IllegalOperation = 0x0000000B,
        PermissionDenied = 0x0000000C,
        ObjectArchived = 0x0000000D,
        IndexOutOfBounds = 0x0000000E,
        ApplicationNamespaceNotSupported = 0x0000000F,
        KeyFormatTypeNotSupported = 0x00000010,
        KeyCompressionTypeNotSupported = 0x00000011,
        EncodingOptionError = 0x00000012,
        KeyValueNotPresent = 0x00000013,
        AttestationRequired = 0x00000014,
        AttestationFailed = 0x00000015,
        Sensitive = 0x00000016,
        NotExtractable = 0x00000017,
        ObjectAlreadyExists = 0x00000018,
        InvalidTicket = 0x00000019,
        UsageLimitExceeded = 0x0000001A,
        NumericRange = 0x0000001B,
        InvalidDataType = 0x0000001C,
        ReadOnlyAttribute = 0x0000001D,
        MultiValuedAttribute = 0x0000001E,
        UnsupportedAttribute = 0x0000001F,
        AttributeInstanceNotFound = 0x00000020,
        AttributeNotFound = 0x00000021,
        AttributeReadOnly = 0x00000022,
        AttributeSingleValued = 0x00000023,
        BadCryptographicParameters = 0x00000024,
        BadPassword = 0x00000025,
        CodecError = 0x00000026,
        IllegalObjectType = 0x00000028,
        IncompatibleCryptographicUsageMask = 0x00000029,
        InternalServerError = 0x0000002A,
        InvalidAsynchronousCorrelationValue = 0x0000002B,
        InvalidAttribute = 0x0000002C,
        InvalidAttributeValue = 0x0000002D,
        InvalidCorrelationValue = 0x0000002E,
        InvalidCsr = 0x0000002F,
        InvalidObjectType = 0x00000030,
        KeyWrapTypeNotSupported = 0x00000032,
        MissingInitializationVector = 0x00000034,
        NonUniqueNameAttribute = 0x00000035,
        ObjectDestroyed = 0x00000036,
        ObjectNotFound = 0x00000037,
        NotAuthorised = 0x00000039,
        ServerLimitExceeded = 0x0000003A,
        UnknownEnumeration = 0x0000003B,
        UnknownTag = 0x0000003D,
        UnsupportedCryptographicParameters = 0x0000003E,
        UnsupportedProtocolVersion = 0x0000003F,
        WrappingObjectArchived = 0x00000040,
        WrappingObjectDestroyed = 0x00000041,
        WrappingObjectNotFound = 0x00000042,
        WrongKeyLifecycleState = 0x00000043,
        ProtectionStorageUnavailable = 0x00000044,
        Pkcs11CodecError = 0x00000045,
        Pkcs11InvalidFunction = 0x00000046,
        Pkcs11InvalidInterface = 0x00000047,
        PrivateProtectionStorageUnavailable = 0x00000048,
        PublicProtectionStorageUnavailable = 0x00000049,
        UnknownObjectGroup = 0x0000004A,
        ConstraintViolation = 0x0000004B,
        DuplicateProcessRequest = 0x0000004C,
        GeneralFailure = 0x00000100,
    }
}

kmip_enum! {
    /// Revocation Reason Code (in the Revocation Reason structure).
    RevocationReasonCode {
        Unspecified = 0x00000001,
        KeyCompromise = 0x00000002,
        CaCompromise = 0x00000003,
        AffiliationChanged = 0x00000004,
        Superseded = 0x00000005,
        CessationOfOperation = 0x00000006,
        PrivilegeWithdrawn = 0x00000007,
    }
}

kmip_enum! {
    /// Object lifecycle State.
    State {
        PreActive = 0x00000001,
        Active = 0x00000002,
        Deactivated = 0x00000003,
        Compromised = 0x00000004,
        Destroyed = 0x00000005,
        DestroyedCompromised = 0x00000006,
    }
}

kmip_enum! {
    /// Managed object type.
    ObjectType {
        Certificate = 0x00000001,
        SymmetricKey = 0x00000002,
        PublicKey = 0x00000003,
        PrivateKey = 0x00000004,
        SplitKey = 0x00000005,
        Template = 0x00000006,
        SecretData = 0x00000007,
        OpaqueObject = 0x00000008,
        PgpKey = 0x00000009,
        CertificateRequest = 0x0000000A,
    }
}

kmip_enum! {
    /// Cryptographic Algorithm.
    CryptographicAlgorithm {
        Des = 0x00000001,
        Des3 = 0x00000002,
        Aes = 0x00000003,
        Rsa = 0x00000004,
        Dsa = 0x00000005,
        Ecdsa = 0x00000006,
        HmacSha1 = 0x00000007,
        HmacSha224 = 0x00000008,
        HmacSha256 = 0x00000009,
        HmacSha384 = 0x0000000A,
        HmacSha512 = 0x0000000B,
        HmacMd5 = 0x0000000C,
        Dh = 0x0000000D,
        Ecdh = 0x0000000E,
        Ecmqv = 0x0000000F,
        Blowfish = 0x00000010,
        Camellia = 0x00000011,
        Cast5 = 0x00000012,
        Idea = 0x00000013,
        Mars = 0x00000014,
        Rc2 = 0x00000015,
        Rc4 = 0x00000016,
        Rc5 = 0x00000017,
        Skipjack = 0x00000018,
        Twofish = 0x00000019,
        Ec = 0x0000001A,
        OneTimePad = 0x0000001B,
        ChaCha20 = 0x0000001C,
        Poly1305 = 0x0000001D,
        ChaCha20Poly1305 = 0x0000001E,
        Sha3224 = 0x0000001F,
        Sha3256 = 0x00000020,
        Sha3384 = 0x00000021,
        Sha3512 = 0x00000022,
        HmacSha3224 = 0x00000023,
        HmacSha3256 = 0x00000024,
        HmacSha3384 = 0x00000025,
        HmacSha3512 = 0x00000026,
        Shake128 = 0x00000027,
        Shake256 = 0x00000028,
        Aria = 0x00000029,
        Seed = 0x0000002A,
        Sm2 = 0x0000002B,
        Sm3 = 0x0000002C,
        Sm4 = 0x0000002D,
        Gostr34102012 = 0x0000002E,
        Gostr34112012 = 0x0000002F,
        Gostr34132015 = 0x00000030,
        Gost2814789 = 0x00000031,
        Xmss = 0x00000032,
        Sphincs256 = 0x00000033,
        McEliece = 0x00000034,
        McEliece6960119 = 0x00000035,
        McEliece8192128 = 0x00000036,
        Ed25519 = 0x00000037,
        Ed448 = 0x00000038,
    }
}

kmip_enum! {
    /// Key Format Type of a Key Block.
    KeyFormatType {
        Raw = 0x00000001,
        Opaque = 0x00000002,
        Pkcs1 = 0x00000003,
        Pkcs8 = 0x00000004,
        X509 = 0x00000005,
        EcPrivateKey = 0x00000006,
        TransparentSymmetricKey = 0x00000007,
        TransparentDsaPrivateKey = 0x00000008,
        TransparentDsaPublicKey = 0x00000009,
        TransparentRsaPrivateKey = 0x0000000A,
        TransparentRsaPublicKey = 0x0000000B,
        TransparentDhPrivateKey = 0x0000000C,
        TransparentDhPublicKey = 0x0000000D,
        TransparentEcdsaPrivateKey = 0x0000000E,
        TransparentEcdsaPublicKey = 0x0000000F,
        TransparentEcdhPrivateKey = 0x00000010,
        TransparentEcdhPublicKey = 0x00000011,
        TransparentEcmqvPrivateKey = 0x00000012,
        TransparentEcmqvPublicKey = 0x00000013,
        TransparentEcPrivateKey = 0x00000014,
        TransparentEcPublicKey = 0x00000015,
        Pkcs12 = 0x00000016,
        Pkcs10 = 0x00000017,
    }
}

kmip_enum! {
    /// Name Type of a Name attribute.
    NameType {
        UninterpretedTextString = 0x00000001,
        Uri = 0x00000002,
    }
}

kmip_enum! {
    /// Query Function of a Query request.
    QueryFunction {
        QueryOperations = 0x00000001,
        QueryObjects = 0x00000002,
        QueryServerInformation = 0x00000003,
        QueryApplicationNamespaces = 0x00000004,
        QueryExtensionList = 0x00000005,
        QueryExtensionMap = 0x00000006,
        QueryAttestationTypes = 0x00000007,
        QueryRngs = 0x00000008,
        QueryValidations = 0x00000009,
        QueryProfiles = 0x0000000A,
        QueryCapabilities = 0x0000000B,
        QueryClientRegistrationMethods = 0x0000000C,
        QueryDefaultsInformation = 0x0000000D,
        QueryStorageProtectionMasks = 0x0000000E,
    }
}

kmip_enum! {
    /// Block Cipher Mode (Cryptographic Parameters).
    BlockCipherMode {
        Cbc = 0x00000001,
        Ecb = 0x00000002,
        Pcbc = 0x00000003,
        Cfb = 0x00000004,
        Ofb = 0x00000005,
        Ctr = 0x00000006,
        Cmac = 0x00000007,
        Ccm = 0x00000008,
        Gcm = 0x00000009,
        CbcMac = 0x0000000A,
        Xts = 0x0000000B,
        AesKeyWrapPadding = 0x0000000C,
        NistKeyWrap = 0x0000000D,
        X9102Aeskw = 0x0000000E,
        X9102Tdkw = 0x0000000F,
        X9102Akw1 = 0x00000010,
        X9102Akw2 = 0x00000011,
        Aead = 0x00000012,
    }
}

kmip_enum! {
    /// Padding Method (Cryptographic Parameters).
    PaddingMethod {
        None = 0x00000001,
        Oaep = 0x00000002,
        Pkcs5 = 0x00000003,
        Ssl3 = 0x00000004,
        Zeros = 0x00000005,
        Ansix923 = 0x00000006,
        Iso10126 = 0x00000007,
        Pkcs1V15 = 0x00000008,
        X931 = 0x00000009,
        Pss = 0x0000000A,
    }
}

kmip_enum! {
    /// Hashing Algorithm (Cryptographic Parameters, Digest).
    HashingAlgorithm {
        Md2 = 0x00000001,
        Md4 = 0x00000002,
        Md5 = 0x00000003,
        Sha1 = 0x00000004,
        Sha224 = 0x00000005,
        Sha256 = 0x00000006,
        Sha384 = 0x00000007,
        Sha512 = 0x00000008,
        Ripemd160 = 0x00000009,
        Tiger = 0x0000000A,
        Whirlpool = 0x0000000B,
        Sha512224 = 0x0000000C,
        Sha512256 = 0x0000000D,
        Sha3224 = 0x0000000E,
        Sha3256 = 0x0000000F,
        Sha3384 = 0x00000010,
        Sha3512 = 0x00000011,
    }
}

kmip_enum! {
    /// Validity Indicator of a Signature Verify answer.
    ValidityIndicator {
        Valid = 0x00000001,
        Invalid = 0x00000002,
        Unknown = 0x00000003,
    }
}

kmip_enum! {
    /// Digital Signature Algorithm (Cryptographic Parameters).
    DigitalSignatureAlgorithm {
        Md2WithRsa = 0x00000001,
        Md5WithRsa = 0x00000002,
        Sha1WithRsa = 0x00000003,
        Sha224WithRsa = 0x00000004,
        Sha256WithRsa = 0x00000005,
        Sha384WithRsa = 0x00000006,
        Sha512WithRsa = 0x00000007,
        RsassaPss = 0x00000008,
        DsaWithSha1 = 0x00000009,
        DsaWithSha224 = 0x0000000A,
        DsaWithSha256 = 0x0000000B,
        EcdsaWithSha1 = 0x0000000C,
        EcdsaWithSha224 = 0x0000000D,
        EcdsaWithSha256 = 0x0000000E,
        EcdsaWithSha384 = 0x0000000F,
        EcdsaWithSha512 = 0x00000010,
    }
}

kmip_enum! {
    /// Secret Data Type of a Secret Data object.
    SecretDataType {
        Password = 0x00000001,
        Seed = 0x00000002,
    }
}

kmip_enum! {
    /// Split Key Method of a Split Key object and a Create Split Key request.
    SplitKeyMethod {
        Xor = 0x00000001,
        PolynomialSharingGf216 = 0x00000002,
        PolynomialSharingPrimeField = 0x00000003,
        PolynomialSharingGf28 = 0x00000004,
    }
}

kmip_enum! {
    /// Link Type of a Link attribute.
    LinkType {
        CertificateLink = 0x00000101,
        PublicKeyLink = 0x00000102,
        PrivateKeyLink = 0x00000103,
        DerivationBaseObjectLink = 0x00000104,
        DerivedKeyLink = 0x00000105,
        ReplacementObjectLink = 0x00000106,
        ReplacedObjectLink = 0x00000107,
        ParentLink = 0x00000108,
        ChildLink = 0x00000109,
        PreviousLink = 0x0000010A,
        NextLink = 0x0000010B,
        Pkcs12CertificateLink = 0x0000010C,
        Pkcs12PasswordLink = 0x0000010D,
        WrappingKeyLink = 0x0000010E,
    }
}

kmip_enum! {
    /// What the server does with the rest of a batch after a failed item.
    BatchErrorContinuationOption {
        Continue = 0x00000001,
        Stop = 0x00000002,
        Undo = 0x00000003,
    }
}

kmip_enum! {
    /// Key Compression Type (elliptic curve public keys).
    KeyCompressionType {
        EcPublicKeyTypeUncompressed = 0x00000001,
        EcPublicKeyTypeX962CompressedPrime = 0x00000002,
        EcPublicKeyTypeX962CompressedChar2 = 0x00000003,
        EcPublicKeyTypeX962Hybrid = 0x00000004,
    }
}

kmip_enum! {
    /// Certificate Type of a Certificate object.
    CertificateType {
        X509 = 0x00000001,
        Pgp = 0x00000002,
    }
}

kmip_enum! {
    /// Certificate Request Type of a Certify or Re-certify request.
    CertificateRequestType {
        Crmf = 0x00000001,
        Pkcs10 = 0x00000002,
        Pem = 0x00000003,
        Pgp = 0x00000004,
    }
}

kmip_enum! {
    /// Key Wrap Type of a Get request.
    KeyWrapType {
        NotWrapped = 0x00000001,
        AsRegistered = 0x00000002,
    }
}

kmip_enum! {
    /// Interop Function of the 2.x test-harness Interop operation.
    InteropFunction {
        Begin = 0x00000001,
        End = 0x00000002,
        Reset = 0x00000003,
    }
}

kmip_enum! {
    /// Endpoint Role of the 2.x Set Endpoint Role operation.
    EndpointRole {
        Client = 0x00000001,
        Server = 0x00000002,
    }
}

kmip_enum! {
    /// Object Group Member of a Locate request.
    ObjectGroupMember {
        GroupMemberFresh = 0x00000001,
        GroupMemberDefault = 0x00000002,
    }
}
