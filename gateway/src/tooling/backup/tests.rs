use super::*;
use kmip_backends::vault::Vault;
use kmip_backends::{Backend, KeyAlgorithm, KeySpec, ObjectKind, ObjectRecord};

fn rec(uid: &str) -> ObjectRecord {
    ObjectRecord {
        uid: uid.into(),
        kind: ObjectKind::SymmetricKey,
        meta: uid.as_bytes().to_vec().into(),
        version: 0,
    }
}

fn aes() -> KeySpec {
    KeySpec {
        algorithm: KeyAlgorithm::Aes,
        bits: 256,
        extractable: true,
        sensitive: false,
        label: None,
    }
}

/// The archive's two vaults restored into `to` (the key written once, each its own head): the
/// identifiers each holds, (map, local).
async fn restored(entries: &[Entry], to: &Path) -> (Vec<String>, Vec<String>) {
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.bytes.to_vec())
            .unwrap()
    };
    let key = to.join("secrets/master.key");
    let mut uids = Vec::new();
    for (i, (log, keys)) in [(MAP_LOG, MAP_KEYS), (VAULT_LOG, VAULT_KEYS)]
        .into_iter()
        .enumerate()
    {
        let snap = VaultSnapshot {
            log: find(log),
            keys: find(keys),
            master_key: Zeroizing::new(find(MASTER_KEY)),
            frames: 0,
        };
        let (dir, head) = (
            to.join(format!("v{i}")),
            to.join(format!("secrets/v{i}.head")),
        );
        if i == 0 {
            kmip_backends::vault::restore(&dir, &key, &head, &snap).unwrap();
        } else {
            kmip_backends::vault::restore_sharing_key(&dir, &key, &head, &snap).unwrap();
        }
        let v = Vault::open_with_head(&dir, MasterKeySource::File(key.clone()), &head).unwrap();
        let mut held: Vec<String> = v
            .load_all()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.uid.to_string())
            .collect();
        held.sort();
        uids.push(held);
    }
    let local = uids.pop().unwrap();
    (uids.pop().unwrap(), local)
}

/// The gateway writes between the first copy of the map and the copy of the local vault: a
/// key in the map, then one in the local vault (as the proxy's writes go). The archive never
/// pairs the map from before with the local vault from after (it would hold `local-1` without
/// `map-1`): the map is copied again, and the pair is the state after the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_proxys_two_vaults_are_copied_as_of_one_moment() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secrets/master.key");
    let master_key = MasterKeyConfig::File(key_file.clone());
    let (map_dir, map_head) = (dir.path().join("map"), dir.path().join("secrets/map.head"));
    let (local_dir, local_head) = (
        dir.path().join("vault"),
        dir.path().join("secrets/vault.head"),
    );
    let source = MasterKeySource::File(key_file);
    let map = Vault::open_with_head(&map_dir, source.clone(), &map_head).unwrap();
    let local = Vault::open_with_head(&local_dir, source, &local_head).unwrap();
    map.generate(rec("map-0"), aes()).await.unwrap();
    local.generate(rec("local-0"), aes()).await.unwrap();

    let runtime = tokio::runtime::Handle::current();
    let entries = tokio::task::spawn_blocking(move || {
        let mut writes = 0;
        let mut write_once = || {
            if writes == 0 {
                runtime.block_on(async {
                    map.generate(rec("map-1"), aes()).await.unwrap();
                    local.generate(rec("local-1"), aes()).await.unwrap();
                });
            }
            writes += 1;
        };
        let mut entries = Vec::new();
        take_migrating(
            &mut entries,
            &master_key,
            (&map_dir, &map_head),
            (&local_dir, &local_head),
            &mut write_once,
        )
        .unwrap();
        assert_eq!(writes, 2, "the map was copied again after the writes");
        entries
    })
    .await
    .unwrap();
    let (in_map, in_local) = restored(&entries, &dir.path().join("restored")).await;
    assert_eq!(in_map, ["map-0", "map-1"]);
    assert_eq!(in_local, ["local-0", "local-1"]);
}
