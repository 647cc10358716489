//! Compare-and-swap transactions on one key: put if absent, put or delete if unchanged since a
//! read.
//!
//! etcd has no conditional put or delete; a writer that must not overwrite a concurrent change
//! reads the key, then sends a `Txn` whose single comparison is "the key is as I read it" (its
//! `version` is 0 for an absent key, its `mod_revision` otherwise) and whose success branch is the
//! write. A failed comparison (`succeeded == false`) means someone else wrote in between: read
//! again and retry. These builders keep the `pb::Compare` plumbing in one place.

use bytes::Bytes;

use crate::pb;

/// Put `value` at `key` only if the key does not exist (`version == 0`).
pub fn put_if_absent(key: &Bytes, value: Bytes) -> pb::TxnRequest {
    one_key_txn(compare_version_zero(key), put_op(key, value))
}

/// Put `value` at `key` only if the key was last modified at `mod_revision`.
pub fn put_if_mod_revision(key: &Bytes, mod_revision: i64, value: Bytes) -> pb::TxnRequest {
    one_key_txn(compare_mod_revision(key, mod_revision), put_op(key, value))
}

/// Delete `key` only if it was last modified at `mod_revision`.
pub fn delete_if_mod_revision(key: &Bytes, mod_revision: i64) -> pb::TxnRequest {
    one_key_txn(compare_mod_revision(key, mod_revision), delete_op(key))
}

fn one_key_txn(compare: pb::Compare, op: pb::RequestOp) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: vec![compare],
        success: vec![op],
        failure: vec![],
    }
}

fn compare_version_zero(key: &Bytes) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Version as i32,
        key: key.clone(),
        target_union: Some(pb::compare::TargetUnion::Version(0)),
        ..Default::default()
    }
}

fn compare_mod_revision(key: &Bytes, mod_revision: i64) -> pb::Compare {
    pb::Compare {
        result: pb::compare::CompareResult::Equal as i32,
        target: pb::compare::CompareTarget::Mod as i32,
        key: key.clone(),
        target_union: Some(pb::compare::TargetUnion::ModRevision(mod_revision)),
        ..Default::default()
    }
}

fn put_op(key: &Bytes, value: Bytes) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
            key: key.clone(),
            value,
            ..Default::default()
        })),
    }
}

fn delete_op(key: &Bytes) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestDeleteRange(
            pb::DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_compare_the_one_key_they_write() {
        let key = Bytes::from_static(b"/calico/k");
        let txn = put_if_absent(&key, Bytes::from_static(b"v"));
        assert_eq!(txn.compare[0].key, key);
        assert_eq!(
            txn.compare[0].target_union,
            Some(pb::compare::TargetUnion::Version(0))
        );
        assert!(matches!(
            &txn.success[0].request,
            Some(pb::request_op::Request::RequestPut(p)) if p.key == key && p.value == "v"
        ));

        let txn = put_if_mod_revision(&key, 7, Bytes::from_static(b"w"));
        assert_eq!(
            txn.compare[0].target_union,
            Some(pb::compare::TargetUnion::ModRevision(7))
        );
        assert_eq!(
            txn.compare[0].target,
            pb::compare::CompareTarget::Mod as i32
        );

        let txn = delete_if_mod_revision(&key, 9);
        assert_eq!(
            txn.compare[0].target_union,
            Some(pb::compare::TargetUnion::ModRevision(9))
        );
        assert!(matches!(
            &txn.success[0].request,
            Some(pb::request_op::Request::RequestDeleteRange(d)) if d.key == key && d.range_end.is_empty()
        ));
        assert!(txn.failure.is_empty());
    }
}
