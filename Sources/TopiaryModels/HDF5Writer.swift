@preconcurrency import CHDF5
import Foundation
import TopiaryCore

/// Writes a model's tensors to an HDF5 file (one float32 dataset per tensor, named as in the checkpoint,
/// plus a `config` string attribute holding `config.json`), for tools that read HDF5.
public enum HDF5Export {
    public enum Failure: Error, LocalizedError {
        case hdf5(path: String, step: String)
        public var errorDescription: String? {
            switch self {
            case let .hdf5(path, step): return "\(path): HDF5 error while \(step)"
            }
        }
    }

    public static func write(model: any LanguageModel, configJSON: String, to path: String) throws {
        try AtomicFile.write(
            to: path, usingTemporaryPath: { tmp in try write(model: model, configJSON: configJSON, path: path, file: tmp) })
    }

    static func write(model: any LanguageModel, configJSON: String, path: String, file tmp: String) throws {
        silenceErrors()
        let file = H5Fcreate(tmp, topiary_h5f_acc_trunc(), topiary_h5p_default(), topiary_h5p_default())
        guard file >= 0 else { throw Failure.hdf5(path: path, step: "creating the file") }
        for p in model.parameters {
            var dims = p.shape.map { hsize_t($0) }
            let space = H5Screate_simple(Int32(dims.count), &dims, nil)
            let ds = H5Dcreate2(
                file, p.name, topiary_h5t_native_float(), space, topiary_h5p_default(), topiary_h5p_default(), topiary_h5p_default())
            let status =
                ds >= 0
                ? H5Dwrite(ds, topiary_h5t_native_float(), topiary_h5s_all(), topiary_h5s_all(), topiary_h5p_default(), p.value.pointer)
                : -1
            if ds >= 0 { H5Dclose(ds) }
            H5Sclose(space)
            guard status >= 0 else { H5Fclose(file); throw Failure.hdf5(path: path, step: "writing \(p.name)") }
        }
        // The configuration as a variable-length string attribute on the root group.
        let type = H5Tcopy(topiary_h5t_c_s1())
        H5Tset_size(type, max(1, configJSON.utf8.count))
        let scalar = H5Screate(H5S_SCALAR)
        let attr = H5Acreate2(file, "config", type, scalar, topiary_h5p_default(), topiary_h5p_default())
        var bytes = Array(configJSON.utf8)
        let astatus = attr >= 0 ? H5Awrite(attr, type, &bytes) : -1
        if attr >= 0 { H5Aclose(attr) }
        H5Sclose(scalar)
        H5Tclose(type)
        guard H5Fclose(file) >= 0 else { throw Failure.hdf5(path: path, step: "closing the file") }
        guard astatus >= 0 else { throw Failure.hdf5(path: path, step: "writing the config attribute") }
    }

    /// HDF5's automatic error stack printing is turned off: failures become ``Failure`` values naming the file.
    static func silenceErrors() {
        topiary_h5_silence_errors()
    }

    /// Rank and element-count limits for a dataset read back: a dataset that declares more float32 values than the
    /// file holds bytes for is refused before its tensor is allocated.
    static let maxRank = 8

    /// Reads one dataset back (tests, tools).
    public static func read(path: String, tensor name: String) throws -> Tensor {
        silenceErrors()
        let file = H5Fopen(path, topiary_h5f_acc_rdonly(), topiary_h5p_default())
        guard file >= 0 else { throw Failure.hdf5(path: path, step: "opening") }
        defer { H5Fclose(file) }
        let ds = H5Dopen2(file, name, topiary_h5p_default())
        guard ds >= 0 else { throw Failure.hdf5(path: path, step: "opening \(name)") }
        defer { H5Dclose(ds) }
        let space = H5Dget_space(ds)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0, rank <= maxRank else { throw Failure.hdf5(path: path, step: "reading \(name): rank \(rank) (at most \(maxRank))") }
        var dims = [hsize_t](repeating: 0, count: rank)
        guard H5Sget_simple_extent_dims(space, &dims, nil) >= 0 else {
            throw Failure.hdf5(path: path, step: "reading the shape of \(name)")
        }
        var count: UInt64 = 1, overflow = false
        for d in dims {
            let r = count.multipliedReportingOverflow(by: UInt64(d))
            count = r.partialValue
            overflow = overflow || r.overflow
        }
        let fileSize = UInt64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)??.uint64Value ?? 0)
        guard !overflow, count <= fileSize / 4 else {
            throw Failure.hdf5(
                path: path, step: "reading \(name): shape \(dims) declares more float32 values than the file's \(fileSize) bytes hold")
        }
        let t = Tensor(uninitialized: dims.map { Int($0) })
        guard H5Dread(ds, topiary_h5t_native_float(), topiary_h5s_all(), topiary_h5s_all(), topiary_h5p_default(), t.pointer) >= 0 else {
            throw Failure.hdf5(path: path, step: "reading \(name)")
        }
        return t
    }
}
