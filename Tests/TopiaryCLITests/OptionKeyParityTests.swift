import Foundation
import TopiaryPipeline
import XCTest

/// `topiary prune` and a recipe's importance + prune stages are two faces of the same work: every option of the command
/// has its recipe key and every key of those stages its option. The options come from the command's own description
/// (`--experimental-dump-help`), the keys from the recipe reader (``RecipeSchema``), so a key or an option added on one
/// side only makes this test fail.
final class OptionKeyParityTests: XCTestCase {
    let harness = CLIHarness()

    /// Long option names of a command, from ArgumentParser's JSON description of it.
    func options(_ command: String) throws -> Set<String> {
        let r = try harness.run([command, "--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let arguments = try XCTUnwrap((json["command"] as? [String: Any])?["arguments"] as? [[String: Any]])
        var names: Set<String> = []
        for a in arguments {
            for n in a["names"] as? [[String: Any]] ?? [] where n["kind"] as? String == "long" {
                if let name = n["name"] as? String { names.insert(name) }
            }
        }
        return names.subtracting(["help", "version"])
    }

    /// Every key the reader knows under `path`, recorded while a recipe that has every stage was parsed.
    func recipeKeys() throws -> [String: Set<String>] {
        let text = """
            version: 1
            name: parity
            model: /nonexistent/model.gguf
            stages:
              importance: { criterion: taylor, calibration: { windows: 2 } }
              prune: { ratio: 0.2, layers: all }
            """
        _ = try Recipe.parse(text, file: "/tmp/parity.yaml", checkFiles: false)
        return RecipeSchema.keys
    }

    func testEveryPruneOptionHasARecipeKeyAndEveryKeyAnOption() throws {
        let options = try options("prune")
        let keys = try recipeKeys()
        // Option → recipe key (path.key). The calibration options map into the importance stage's `calibration`.
        var map: [String: String] = [
            "model": "recipe.model", "data": "recipe.data", "threads": "recipe.threads", "seed": "stages.importance.seed",
            "importance": "stages.importance.criterion", "aggregation": "stages.importance.aggregation",
            "calibration": "stages.importance.calibration.file", "calibration-windows": "stages.importance.calibration.windows",
            "calibration-length": "stages.importance.calibration.length", "calibration-offset": "stages.importance.calibration.offset",
            "compensate": "stages.prune.compensate", "no-compensate": "stages.prune.compensate",
            "vd-lr": "stages.importance.vd_lr",
        ]
        for o in ["lambda", "taylor-order", "vd-steps", "vd-windows", "vd-kl-weight", "obs-step"] {
            map[o] = "stages.importance." + o.replacingOccurrences(of: "-", with: "_")
        }
        for o in ["ratio", "layers", "mode", "round-to", "merge", "allocation", "search-evaluations", "search-windows", "search-offset"] {
            map[o] = "stages.prune." + o.replacingOccurrences(of: "-", with: "_")
        }
        // Options that shape the command's own output, with what a recipe run uses instead.
        let commandOnly: [String: String] = [
            "out": "a run writes OUT/NN-prune/model (`topiary run --out`)",
            "force": "`topiary run --force` / `--from`",
            "format": "a run's stages write checkpoints; `hdf5` is a copy for other tools",
            "stream-layers": "layer streaming writes one GGUF; recipes hold the model in memory",
            "gguf-type": "the GGUF storage type of a streamed prune (see stream-layers)",
        ]
        for o in options.sorted() {
            if commandOnly[o] != nil { continue }
            guard let key = map[o] else { XCTFail("prune --\(o) has no recipe key"); continue }
            let path = String(key[..<key.lastIndex(of: ".")!]), name = String(key[key.index(after: key.lastIndex(of: ".")!)...])
            XCTAssertTrue(keys[path]?.contains(name) ?? false, "prune --\(o) maps to \(key), which the recipe reader does not know")
        }
        let reached = Set(map.values)
        for path in ["stages.importance", "stages.prune", "stages.importance.calibration"] {
            for k in keys[path] ?? [] where k != "calibration" {
                XCTAssertTrue(reached.contains(path + "." + k), "recipe key \(path).\(k) has no option of `topiary prune`")
            }
        }
        for o in commandOnly.keys { XCTAssertTrue(options.contains(o), "the exception --\(o) is no longer an option: drop it") }
    }
}
