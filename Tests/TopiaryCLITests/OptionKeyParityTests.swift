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
              sparsify: { method: wanda, calibration: { windows: 2 } }
              sweep: { methods: [magnitude], perplexity: { windows: 2 }, calibration: { windows: 2 } }
              finetune: { steps: 2 }
              evaluate: { perplexity: { windows: 2 }, generation: { prompts: [hi] } }
              export: { format: gguf }
            """
        _ = try Recipe.parse(text, file: "/tmp/parity.yaml", checkFiles: false)
        // A recipe recovers with finetune or distill, not both: the distill stage's keys come from a second recipe.
        let distill = """
            version: 1
            name: parity-distill
            model: /nonexistent/model.gguf
            stages:
              distill: { steps: 2, teacher: /nonexistent/teacher.gguf }
            """
        _ = try Recipe.parse(distill, file: "/tmp/parity-distill.yaml", checkFiles: false)
        return RecipeSchema.keys
    }

    /// Every option of each command that builds a request has its recipe key (the command's face says which), and every
    /// key of the stages it covers has an option.
    func testEveryOptionHasARecipeKeyAndEveryKeyAnOption() throws {
        let keys = try recipeKeys()
        for face in CommandLineFace.all {
            let options = try options(face.command)
            for o in options.sorted() {
                if face.commandOnly[o] != nil { continue }
                guard let key = face.keys[o] else { XCTFail("\(face.command) --\(o) has no recipe key"); continue }
                let full = face.recipePath(key)
                let path = String(full[..<full.lastIndex(of: ".")!]), name = String(full[full.index(after: full.lastIndex(of: ".")!)...])
                XCTAssertTrue(
                    keys[path]?.contains(name) ?? false, "\(face.command) --\(o) maps to \(full), which the recipe reader does not know")
            }
            for (o, key) in face.keys { XCTAssertTrue(options.contains(o), "\(face.command) has no --\(o) (for \(key))") }
            let reached = Set(face.keys.values.map(face.recipePath))
            // The stages (and their nested mappings) this command covers.
            let covered = keys.keys.filter { path in
                reached.contains { $0.hasPrefix(path + ".") } && path.hasPrefix("stages.")
            }
            for path in covered {
                for k in keys[path] ?? [] where keys[path + "." + k] == nil && !Self.aliases.contains(path + "." + k) {
                    XCTAssertTrue(reached.contains(path + "." + k), "recipe key \(path).\(k) has no option of `topiary \(face.command)`")
                }
            }
            for o in face.commandOnly.keys {
                XCTAssertTrue(options.contains(o), "\(face.command): the exception --\(o) is no longer an option: drop it")
            }
        }
    }

    /// Older spellings a recipe still accepts (each has its current key).
    static let aliases: Set<String> = ["stages.finetune.format", "stages.distill.format"]

    /// A request's error is shown in each face's own terms: the option on the command line, the key path in a recipe.
    func testRequestErrorsNameTheOptionOrTheKey() throws {
        var p = PruneConfig(ratio: 1.5, layers: "all")
        XCTAssertThrowsError(try p.validate()) { e in
            XCTAssertEqual(CommandLineFace.prune.message((e as! RequestError).within("prune")), "--ratio 1.5 must be < 1.0")
        }
        p.ratio = 0.2
        p.allocation = "search"
        p.mode = .global
        XCTAssertThrowsError(try p.validate()) { e in
            XCTAssertEqual(
                CommandLineFace.prune.message((e as! RequestError).within("prune")),
                "--allocation search learns per-layer shares of the budget: it needs --mode uniform")
        }
    }
}
