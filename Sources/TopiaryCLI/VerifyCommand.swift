import ArgumentParser
import Foundation
import TopiaryModels

/// `topiary verify DIR…`: checks checkpoint directories (models, LoRA checkpoints) against their manifests.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that checkpoint directories are complete and undamaged (every file's size and checksum against manifest.json).",
        discussion: "Exits non-zero at the first directory that is incomplete (no manifest) or damaged, naming the file.")

    @Argument(help: "Checkpoint directories (a model saved by Topiary, or a finetune checkpoint/).") var directories: [String]

    func run() throws {
        try reportingErrors {
            for dir in directories {
                try Checkpoint.verifyManifest(directory: dir, required: [])
                print("\(dir): complete")
            }
        }
    }
}
