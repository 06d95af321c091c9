import Foundation

/// An SVG drawing of one or more frontiers: × smaller than F16 (log scale, right is smaller)
/// against relative error (log scale, down is better), one polyline per curve, one panel per
/// snapshot, a shared legend; a method's quantized curves share its colour, dashed. Pure text: the caller decides where it goes.
public enum FrontierPlot {
    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
                          "#17becf", "#bcbd22"]

    /// The SVG document for `panels` (title, frontier), with optional horizontal and vertical
    /// guide lines (a target error, a target size factor).
    public static func svg(_ panels: [(title: String, frontier: Frontier)], targetError: Double? = nil,
                           targetTimes: Double? = nil) -> String {
        let width = 760.0, panelHeight = 420.0, left = 70.0, right = 200.0, top = 36.0, bottom = 46.0
        let plotW = width - left - right, plotH = panelHeight - top - bottom
        let all = panels.flatMap { $0.frontier.points }
        let xs = all.map(\.timesSmaller).filter { $0 > 0 }, ys = all.map(\.relativeError).filter { $0 > 0 }
        let xLo = pow(10, floor(log10(xs.min() ?? 1))), xHi = pow(10, ceil(log10(max(xs.max() ?? 10, targetTimes ?? 0))))
        let yLo = pow(10, floor(log10(ys.min() ?? 0.001))), yHi = pow(10, ceil(log10(ys.max() ?? 1)))
        func x(_ v: Double) -> Double { left + plotW * (log10(max(v, xLo)) - log10(xLo)) / (log10(xHi) - log10(xLo)) }
        func y(_ v: Double) -> Double { top + plotH * (1 - (log10(max(v, yLo)) - log10(yLo)) / (log10(yHi) - log10(yLo))) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        var names: [String] = [], methods: [String] = []
        for p in all where !names.contains(p.curve) { names.append(p.curve) }
        func method(_ curve: String) -> String { String(curve.split(separator: "+")[0]) }
        for n in names where !methods.contains(method(n)) { methods.append(method(n)) }
        // One colour per method; its quantized curves dashed.
        func color(_ curve: String) -> String { palette[(methods.firstIndex(of: method(curve)) ?? 0) % palette.count] }
        func dashed(_ curve: String) -> Bool { curve.contains("+") }

        let height = panelHeight * Double(panels.count)
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
        <rect width="100%" height="100%" fill="white"/>

        """
        for (i, panel) in panels.enumerated() {
            s += "<g transform=\"translate(0,\(f(Double(i) * panelHeight)))\">\n"
            s += "<text x=\"\(f(left))\" y=\"20\" font-size=\"13\" font-weight=\"bold\">\(esc(panel.title))</text>\n"
            // Grid and ticks at powers of ten (and 2, 5 between).
            for v in ticks(xLo, xHi) {
                s += "<line x1=\"\(f(x(v)))\" y1=\"\(f(top))\" x2=\"\(f(x(v)))\" y2=\"\(f(top + plotH))\" stroke=\"#e5e5e5\"/>\n"
                s += "<text x=\"\(f(x(v)))\" y=\"\(f(top + plotH + 14))\" text-anchor=\"middle\">\(String(format: "%g", v))×</text>\n"
            }
            for v in ticks(yLo, yHi) {
                s += "<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(v)))\" stroke=\"#e5e5e5\"/>\n"
                s += "<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%g", v))</text>\n"
            }
            s += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#444\"/>\n"
            if let t = targetError, t > yLo, t < yHi {
                s += "<line x1=\"\(f(left))\" y1=\"\(f(y(t)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(t)))\" stroke=\"#000\" stroke-dasharray=\"2,3\"/>\n"
            }
            if let t = targetTimes, t > xLo, t < xHi {
                s += "<line x1=\"\(f(x(t)))\" y1=\"\(f(top))\" x2=\"\(f(x(t)))\" y2=\"\(f(top + plotH))\" stroke=\"#000\" stroke-dasharray=\"2,3\"/>\n"
            }
            s += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(top + plotH + 32))\" text-anchor=\"middle\">× smaller than the F16 input (encoded keys and values)</text>\n"
            s += "<text transform=\"translate(16,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">attention-output relative error (proportional)</text>\n"
            for curve in panel.frontier.curves {
                let pts = curve.points.sorted { $0.timesSmaller < $1.timesSmaller }
                let path = pts.map { "\(f(x($0.timesSmaller))),\(f(y($0.relativeError)))" }.joined(separator: " ")
                s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color(curve.name))\" stroke-width=\"1.6\"\(dashed(curve.name) ? " stroke-dasharray=\"5,3\"" : "")/>\n"
                for p in pts {
                    s += "<circle cx=\"\(f(x(p.timesSmaller)))\" cy=\"\(f(y(p.relativeError)))\" r=\"2.6\" fill=\"\(color(curve.name))\"><title>\(esc(p.policy)): \(String(format: "%.1f", p.timesSmaller))× smaller, error \(String(format: "%.4f", p.relativeError))</title></circle>\n"
                }
            }
            for (k, name) in names.enumerated() {
                let ly = top + 6 + Double(k) * 16, lx = left + plotW + 14
                s += "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 22))\" y2=\"\(f(ly))\" stroke=\"\(color(name))\" stroke-width=\"2\"\(dashed(name) ? " stroke-dasharray=\"5,3\"" : "")/>\n"
                s += "<text x=\"\(f(lx + 28))\" y=\"\(f(ly + 4))\">\(esc(name))</text>\n"
            }
            s += "</g>\n"
        }
        s += "</svg>\n"
        return s
    }

    /// 1, 2, 5 times each power of ten from `lo` to `hi` (both powers of ten).
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        var out: [Double] = []
        var decade = lo
        while decade <= hi * 1.0001 {
            for m in [1.0, 2, 5] where decade * m <= hi * 1.0001 { out.append(decade * m) }
            decade *= 10
        }
        return out
    }
}
