/// The few vector loops every compressor and fidelity measure runs millions of times.
///
/// They work on raw contiguous pointers with `SIMD8<Float>` and two accumulators (about ten
/// times a scalar loop on this CPU, ../shared/PLATFORM.md), so callers keep their buffers
/// contiguous and call these once per row.
public enum VectorKernels {
    /// `Σ a[i]·b[i]` over `n` floats.
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = SIMD8<Float>(repeating: 0)
        var acc1 = SIMD8<Float>(repeating: 0)
        var i = 0
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        while i + 16 <= n {
            let a0 = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let b0 = rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let a1 = ra.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            let b1 = rb.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            acc0.addProduct(a0, b0)
            acc1.addProduct(a1, b1)
            i += 16
        }
        if i + 8 <= n {
            let a0 = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let b0 = rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            acc0.addProduct(a0, b0)
            i += 8
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// `dot(a, b[k], n)` for four rows `b` at once, each summed in exactly `dot`'s order (so
    /// bit-identical to four calls), loading `a` once for the four.
    @inline(__always)
    public static func dot4(_ a: UnsafePointer<Float>, _ b0: UnsafePointer<Float>, _ b1: UnsafePointer<Float>,
                            _ b2: UnsafePointer<Float>, _ b3: UnsafePointer<Float>, _ n: Int) -> SIMD4<Float> {
        var lo = (SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0), SIMD8<Float>(repeating: 0))
        var hi = lo
        let ra = UnsafeRawPointer(a)
        let rb = (UnsafeRawPointer(b0), UnsafeRawPointer(b1), UnsafeRawPointer(b2), UnsafeRawPointer(b3))
        var i = 0
        while i + 16 <= n {
            let a0 = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            let a1 = ra.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self)
            lo.0.addProduct(a0, rb.0.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            hi.0.addProduct(a1, rb.0.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self))
            lo.1.addProduct(a0, rb.1.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            hi.1.addProduct(a1, rb.1.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self))
            lo.2.addProduct(a0, rb.2.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            hi.2.addProduct(a1, rb.2.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self))
            lo.3.addProduct(a0, rb.3.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            hi.3.addProduct(a1, rb.3.loadUnaligned(fromByteOffset: (i + 8) * 4, as: SIMD8<Float>.self))
            i += 16
        }
        if i + 8 <= n {
            let a0 = ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            lo.0.addProduct(a0, rb.0.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            lo.1.addProduct(a0, rb.1.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            lo.2.addProduct(a0, rb.2.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            lo.3.addProduct(a0, rb.3.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            i += 8
        }
        var s = SIMD4<Float>((lo.0 + hi.0).sum(), (lo.1 + hi.1).sum(), (lo.2 + hi.2).sum(), (lo.3 + hi.3).sum())
        while i < n {
            s[0] += a[i] * b0[i]; s[1] += a[i] * b1[i]; s[2] += a[i] * b2[i]; s[3] += a[i] * b3[i]
            i += 1
        }
        return s
    }

    /// `dot4(a0, b…)` and `dot4(a1, b…)` at once, each of the eight sums in exactly `dot`'s
    /// order (bit-identical to eight calls): every `b` chunk loaded once for two rows of `a`,
    /// sixteen accumulators that stay in registers.
    @inline(__always)
    public static func dot2x4(_ a0: UnsafePointer<Float>, _ a1: UnsafePointer<Float>, _ b0: UnsafePointer<Float>,
                              _ b1: UnsafePointer<Float>, _ b2: UnsafePointer<Float>, _ b3: UnsafePointer<Float>,
                              _ n: Int) -> (SIMD4<Float>, SIMD4<Float>) {
        let zero = SIMD8<Float>(repeating: 0)
        var (l00, l01, l02, l03, h00, h01, h02, h03) = (zero, zero, zero, zero, zero, zero, zero, zero)
        var (l10, l11, l12, l13, h10, h11, h12, h13) = (zero, zero, zero, zero, zero, zero, zero, zero)
        let (ra0, ra1) = (UnsafeRawPointer(a0), UnsafeRawPointer(a1))
        let rb = (UnsafeRawPointer(b0), UnsafeRawPointer(b1), UnsafeRawPointer(b2), UnsafeRawPointer(b3))
        // Eight products of the chunk at byte `o`: `x0`, `x1` (the two A rows') with each B row's.
        @inline(__always)
        func chunk(_ o: Int, _ x0: SIMD8<Float>, _ x1: SIMD8<Float>, _ c00: inout SIMD8<Float>, _ c01: inout SIMD8<Float>,
                   _ c02: inout SIMD8<Float>, _ c03: inout SIMD8<Float>, _ c10: inout SIMD8<Float>, _ c11: inout SIMD8<Float>,
                   _ c12: inout SIMD8<Float>, _ c13: inout SIMD8<Float>) {
            var b = rb.0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            c00.addProduct(x0, b); c10.addProduct(x1, b)
            b = rb.1.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            c01.addProduct(x0, b); c11.addProduct(x1, b)
            b = rb.2.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            c02.addProduct(x0, b); c12.addProduct(x1, b)
            b = rb.3.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
            c03.addProduct(x0, b); c13.addProduct(x1, b)
        }
        var i = 0
        while i + 16 <= n {
            let (lo, hi) = (i * 4, (i + 8) * 4)
            chunk(lo, ra0.loadUnaligned(fromByteOffset: lo, as: SIMD8<Float>.self), ra1.loadUnaligned(fromByteOffset: lo, as: SIMD8<Float>.self),
                  &l00, &l01, &l02, &l03, &l10, &l11, &l12, &l13)
            chunk(hi, ra0.loadUnaligned(fromByteOffset: hi, as: SIMD8<Float>.self), ra1.loadUnaligned(fromByteOffset: hi, as: SIMD8<Float>.self),
                  &h00, &h01, &h02, &h03, &h10, &h11, &h12, &h13)
            i += 16
        }
        if i + 8 <= n {
            let o = i * 4
            chunk(o, ra0.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self), ra1.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self),
                  &l00, &l01, &l02, &l03, &l10, &l11, &l12, &l13)
            i += 8
        }
        var s0 = SIMD4<Float>((l00 + h00).sum(), (l01 + h01).sum(), (l02 + h02).sum(), (l03 + h03).sum())
        var s1 = SIMD4<Float>((l10 + h10).sum(), (l11 + h11).sum(), (l12 + h12).sum(), (l13 + h13).sum())
        while i < n {
            s0[0] += a0[i] * b0[i]; s0[1] += a0[i] * b1[i]; s0[2] += a0[i] * b2[i]; s0[3] += a0[i] * b3[i]
            s1[0] += a1[i] * b0[i]; s1[1] += a1[i] * b1[i]; s1[2] += a1[i] * b2[i]; s1[3] += a1[i] * b3[i]
            i += 1
        }
        return (s0, s1)
    }

    /// `y[i] += alpha·x[i]` over `n` floats.
    @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let av = SIMD8<Float>(repeating: alpha)
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        var i = 0
        while i + 8 <= n {
            let xv = rx.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            var yv = ry.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            yv.addProduct(av, xv)
            ry.storeBytes(of: yv, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { y[i] += alpha * x[i]; i += 1 }
    }

    /// `x[i] *= alpha` over `n` floats.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, _ alpha: Float, _ n: Int) {
        for i in 0..<n { x[i] *= alpha }
    }

    /// Turns `x[0..<n]` into `softmax(x)` in place (max-subtracted, so large logits are safe).
    public static func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        guard n > 0 else { return }
        var m = -Float.infinity
        for i in 0..<n where x[i] > m { m = x[i] }
        var total: Float = 0
        for i in 0..<n {
            let e = expf(x[i] - m)
            x[i] = e
            total += e
        }
        let inv = 1 / total
        for i in 0..<n { x[i] *= inv }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pointer handed to the worker closures of `DispatchQueue.concurrentPerform`.
///
/// The workers touch disjoint parts of the buffer (or only read it), and the owner keeps it
/// alive until `concurrentPerform` returns; that is what makes the unchecked conformance sound.
struct SharedPointer<Pointee>: @unchecked Sendable {
    let base: UnsafeMutablePointer<Pointee>
    init(_ base: UnsafeMutablePointer<Pointee>) { self.base = base }
    init(_ base: UnsafePointer<Pointee>) { self.base = UnsafeMutablePointer(mutating: base) }
}
