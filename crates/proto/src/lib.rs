//! Generated gRPC code for the `jobboard.v1` contract (`proto/jobboard/v1/`), clients and servers.

/// Messages, enums, clients and server traits of the `jobboard.v1` protobuf package.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/jobboard.v1.rs"));
}

/// Encoded `google.protobuf.FileDescriptorSet` of the whole contract (with its imports), for
/// `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/jobboard_descriptor.bin"));

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use prost::Message as _;
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    fn contract_files() -> Vec<FileDescriptorProto> {
        let set =
            FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        set.file
            .into_iter()
            .filter(|file| file.package() == "jobboard.v1")
            .collect()
    }

    #[test]
    fn descriptor_set_holds_the_three_services() {
        let services: HashSet<String> = contract_files()
            .iter()
            .flat_map(|file| {
                file.service
                    .iter()
                    .map(|s| format!("jobboard.v1.{}", s.name()))
            })
            .collect();
        for expected in [
            "jobboard.v1.PostingsService",
            "jobboard.v1.PostingQueryService",
            "jobboard.v1.EventFeedService",
        ] {
            assert!(
                services.contains(expected),
                "{expected} missing from {services:?}"
            );
        }
    }

    /// Client teams read the `.proto` files, so every service, rpc, message, field, enum and
    /// enum value carries a leading comment. Paths follow `descriptor.proto` field numbers.
    #[test]
    fn every_contract_element_is_documented() {
        let mut undocumented = Vec::new();
        for file in contract_files() {
            let documented: HashSet<Vec<i32>> = file
                .source_code_info
                .as_ref()
                .expect("source info is included")
                .location
                .iter()
                .filter(|l| l.leading_comments().trim().len() > 1)
                .map(|l| l.path.clone())
                .collect();
            let mut check = |path: Vec<i32>, name: String| {
                if !documented.contains(&path) {
                    undocumented.push(format!("{}: {name}", file.name()));
                }
            };
            for (i, message) in (0..).zip(&file.message_type) {
                check(vec![4, i], message.name().to_owned());
                for (j, field) in (0..).zip(&message.field) {
                    check(
                        vec![4, i, 2, j],
                        format!("{}.{}", message.name(), field.name()),
                    );
                }
            }
            for (i, enumeration) in (0..).zip(&file.enum_type) {
                check(vec![5, i], enumeration.name().to_owned());
                for (j, value) in (0..).zip(&enumeration.value) {
                    check(vec![5, i, 2, j], value.name().to_owned());
                }
            }
            for (i, service) in (0..).zip(&file.service) {
                check(vec![6, i], service.name().to_owned());
                for (j, method) in (0..).zip(&service.method) {
                    check(
                        vec![6, i, 2, j],
                        format!("{}.{}", service.name(), method.name()),
                    );
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
    }
}
