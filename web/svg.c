// svg: see svg.h.
#include "svg.h"
#include <math.h>
#include <stdio.h>

// The plot area inside the SVG_WIDTH x SVG_HEIGHT chart
#define SVG_LEFT   56
#define SVG_RIGHT  12
#define SVG_TOP    28
#define SVG_BOTTOM 40
#define SVG_PW     (SVG_WIDTH - SVG_LEFT - SVG_RIGHT)
#define SVG_PH     (SVG_HEIGHT - SVG_TOP - SVG_BOTTOM)

const char *svg_color(int64_t i) {
    static const char *palette[8] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                     "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    return palette[(i % 8 + 8) % 8];
}

// An axis range [lo, hi] with a "nice" tick step (1, 2 or 5 times a power of ten), about 5 ticks.
typedef struct { double lo, hi, step; } SvgAxis;

static SvgAxis svg_axis(double lo, double hi) {
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi < lo) { double t = lo; lo = hi; hi = t; }
    lo = fmax(lo, -1e307), hi = fmin(hi, 1e307);   // spans and steps stay finite
    if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
        double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= pad, hi += pad;
    }
    double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    return (SvgAxis){floor(lo / step) * step, ceil(hi / step) * step, step};
}

// Where v falls on the axis, 0 to 1 inside it; values far outside (beyond the axis's clamp of
// +-1e307) are held a little past its ends, so no coordinate is ever infinite or NaN.
static double svg_frac(const SvgAxis *a, double v) {
    double f = (v - a->lo) / (a->hi - a->lo);
    return isnan(f) ? 0 : fmin(fmax(f, -0.05), 1.05);
}
static double svg_px(const SvgAxis *a, double v) { return SVG_LEFT + svg_frac(a, v) * SVG_PW; }
static double svg_py(const SvgAxis *a, double v) {
    return SVG_TOP + SVG_PH - svg_frac(a, v) * SVG_PH;
}

static void svg_open(HtmlBuf *b, const char *kind, const char *title) {
    html_printf(b,
                "<svg class=\"chart chart-%s\" xmlns=\"http://www.w3.org/2000/svg\" "
                "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"",
                kind, SVG_WIDTH, SVG_HEIGHT, SVG_WIDTH, SVG_HEIGHT);
    html_esc(b, title);
    html_put(b, "\"><title>");
    html_esc(b, title);
    html_printf(b, "</title><text x=\"%d\" y=\"16\" font-size=\"13\" font-weight=\"bold\" "
                   "fill=\"#222\">", SVG_LEFT);
    html_esc(b, title);
    html_put(b, "</text>");
}

static void svg_num(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v);
    if (a != 0 && (a >= 1e5 || a < 1e-3)) snprintf(buf, n, "%.2g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, n, "%.*f", dec > 6 ? 6 : dec, v);
    }
}

// The axes: ticks and grid lines on y (always), ticks on x when xa is not NULL.
static void svg_axes(HtmlBuf *b, const SvgAxis *xa, const SvgAxis *ya, const char *xlabel) {
    char num[32];
    int ticks = 0;   // at most 12 a side, whatever rounding does to v += step
    for (double v = ya->lo; v <= ya->hi + ya->step * 1e-6 && ticks++ < 12; v += ya->step) {
        double y = svg_py(ya, v);
        svg_num(num, sizeof num, v, ya->step);
        html_printf(b,
                    "<g class=\"tick tick-y\"><line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" "
                    "stroke=\"#e4e4e4\"/><text x=\"%d\" y=\"%.1f\" font-size=\"10\" "
                    "text-anchor=\"end\" fill=\"#444\">%s</text></g>",
                    SVG_LEFT, SVG_LEFT + SVG_PW, y, y, SVG_LEFT - 4, y + 3, num);
    }
    ticks = 0;
    if (xa)
        for (double v = xa->lo; v <= xa->hi + xa->step * 1e-6 && ticks++ < 12; v += xa->step) {
            double x = svg_px(xa, v);
            svg_num(num, sizeof num, v, xa->step);
            html_printf(b,
                        "<g class=\"tick tick-x\"><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" "
                        "y2=\"%d\" stroke=\"#444\"/><text x=\"%.1f\" y=\"%d\" font-size=\"10\" "
                        "text-anchor=\"middle\" fill=\"#444\">%s</text></g>",
                        x, x, SVG_TOP + SVG_PH, SVG_TOP + SVG_PH + 4, x, SVG_TOP + SVG_PH + 15,
                        num);
        }
    html_printf(b,
                "<path class=\"axis\" d=\"M%d %dV%dH%d\" fill=\"none\" stroke=\"#444\"/>",
                SVG_LEFT, SVG_TOP, SVG_TOP + SVG_PH, SVG_LEFT + SVG_PW);
    if (xlabel && *xlabel) {
        html_printf(b, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" "
                       "fill=\"#222\">", SVG_LEFT + SVG_PW / 2, SVG_HEIGHT - 6);
        html_esc(b, xlabel);
        html_put(b, "</text>");
    }
}

void svg_histogram(HtmlBuf *b, const char *title, const char *xlabel, const int64_t *counts,
                   int64_t bins, double lo, double hi) {
    int64_t top = 0;
    for (int64_t i = 0; i < bins; i++) if (counts[i] > top) top = counts[i];
    if (!(hi > lo)) hi = lo + 1;
    SvgAxis xa = svg_axis(lo, hi), ya = svg_axis(0, top ? (double)top : 1);
    if (ya.step < 1) ya = (SvgAxis){0, ya.hi < 1 ? 1 : ceil(ya.hi), 1};
    svg_open(b, "histogram", title);
    svg_axes(b, &xa, &ya, xlabel);
    double w = (hi - lo) / (double)(bins ? bins : 1);
    for (int64_t i = 0; i < bins; i++) {
        if (counts[i] <= 0) continue;
        double x0 = svg_px(&xa, lo + w * (double)i), x1 = svg_px(&xa, lo + w * (double)(i + 1));
        double y = svg_py(&ya, (double)counts[i]);
        html_printf(b,
                    "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                    "fill=\"%s\"><title>%.4g to %.4g: %lld</title></rect>",
                    x0, y, x1 - x0 > 1.5 ? x1 - x0 - 0.5 : 1, SVG_TOP + SVG_PH - y, svg_color(0),
                    lo + w * (double)i, lo + w * (double)(i + 1), (long long)counts[i]);
    }
    html_put(b, "</svg>");
}

// A series' points as a polyline's "x,y " list. Past two points per pixel column, each column
// keeps its first, lowest, highest and last points in their order (a spike stays visible and the
// chart of a 100,000-step run stays small).
static void svg_points(HtmlBuf *b, const SvgAxis *xa, const SvgAxis *ya, const SvgSeries *s) {
    int thin = s->n > 2 * SVG_PW;
    int64_t col_start = -1, keep[4];
    long col = 0;
    for (int64_t i = 0; i <= s->n; i++) {
        int last = i == s->n;
        if (!last && (!isfinite(s->x[i]) || !isfinite(s->y[i]))) continue;
        long c = last ? -1 : lround(svg_px(xa, s->x[i]));
        if (!thin && !last) {
            html_printf(b, "%.2f,%.2f ", svg_px(xa, s->x[i]), svg_py(ya, s->y[i]));
            continue;
        }
        if (col_start >= 0 && (last || c != col)) {   // the column ends: its kept points
            for (int k = 1; k < 4; k++)   // in their order
                for (int j = k; j > 0 && keep[j] < keep[j - 1]; j--) {
                    int64_t t = keep[j];
                    keep[j] = keep[j - 1], keep[j - 1] = t;
                }
            for (int k = 0; k < 4; k++) {
                if (k && keep[k] == keep[k - 1]) continue;
                html_printf(b, "%.2f,%.2f ", svg_px(xa, s->x[keep[k]]),
                            svg_py(ya, s->y[keep[k]]));
            }
            col_start = -1;
        }
        if (last) break;
        if (col_start < 0) {
            col_start = i, col = c;
            keep[0] = keep[1] = keep[2] = keep[3] = i;
        }
        if (s->y[i] < s->y[keep[1]]) keep[1] = i;
        if (s->y[i] > s->y[keep[2]]) keep[2] = i;
        keep[3] = i;
    }
}

void svg_lines(HtmlBuf *b, const char *title, const char *xlabel, const SvgSeries *series,
               int64_t nseries) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int64_t s = 0; s < nseries; s++)
        for (int64_t i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
        }
    SvgAxis xa = svg_axis(xlo, xhi), ya = svg_axis(ylo, yhi);
    svg_open(b, "lines", title);
    svg_axes(b, &xa, &ya, xlabel);
    for (int64_t s = 0; s < nseries; s++) {
        int64_t finite = 0;
        for (int64_t i = 0; i < series[s].n; i++)
            finite += isfinite(series[s].x[i]) && isfinite(series[s].y[i]);
        if (!finite) continue;
        html_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" "
                       "stroke-width=\"1.5\" points=\"", svg_color(s));
        svg_points(b, &xa, &ya, &series[s]);
        html_put(b, "\"><title>");
        html_esc(b, series[s].name);
        html_put(b, "</title></polyline>");
        if (finite == 1)   // a single point draws no line: a dot instead
            for (int64_t i = 0; i < series[s].n; i++)
                if (isfinite(series[s].x[i]) && isfinite(series[s].y[i]))
                    html_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>",
                                svg_px(&xa, series[s].x[i]), svg_py(&ya, series[s].y[i]),
                                svg_color(s));
    }
    for (int64_t s = 0; s < nseries; s++) {   // the legend, in the top right corner
        int y = SVG_TOP + 4 + (int)s * 13;
        html_printf(b,
                    "<g class=\"legend-item\"><rect x=\"%d\" y=\"%d\" width=\"10\" "
                    "height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" font-size=\"10\" "
                    "fill=\"#222\">",
                    SVG_LEFT + SVG_PW - 150, y, svg_color(s), SVG_LEFT + SVG_PW - 136, y + 9);
        html_esc_short(b, series[s].name, 28);
        html_put(b, "</text></g>");
    }
    html_put(b, "</svg>");
}

void svg_calibration(HtmlBuf *b, const char *title, const double *predicted,
                     const double *observed, const int64_t *count, int64_t n) {
    SvgAxis xa = {0, 1, 0.1}, ya = {0, 1, 0.2};
    svg_open(b, "calibration", title);
    svg_axes(b, &xa, &ya, "predicted probability (model)");
    html_printf(b,
                "<line class=\"diagonal\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
                "stroke=\"#999\" stroke-dasharray=\"4 3\"/>",
                svg_px(&xa, 0), svg_py(&ya, 0), svg_px(&xa, 1), svg_py(&ya, 1));
    html_printf(b, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                   "points=\"", svg_color(0));
    for (int64_t i = 0; i < n; i++)
        if (count[i] > 0 && isfinite(predicted[i]) && isfinite(observed[i]))
            html_printf(b, "%.2f,%.2f ", svg_px(&xa, predicted[i]), svg_py(&ya, observed[i]));
    html_put(b, "\"/>");
    for (int64_t i = 0; i < n; i++) {
        if (count[i] <= 0 || !isfinite(predicted[i]) || !isfinite(observed[i])) continue;
        html_printf(b,
                    "<circle class=\"point\" cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\">"
                    "<title>predicted %.3f, observed %.3f (%lld pairs)</title></circle>",
                    svg_px(&xa, predicted[i]), svg_py(&ya, observed[i]), svg_color(0),
                    predicted[i], observed[i], (long long)count[i]);
    }
    html_put(b, "</svg>");
}

void svg_bars(HtmlBuf *b, const char *title, const char *const *labels, const double *values,
              int64_t n, double ymax) {
    double lo = 0, hi = ymax > 0 ? ymax : 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(values[i])) continue;
        lo = fmin(lo, values[i]);
        if (ymax <= 0) hi = fmax(hi, values[i]);
    }
    if (hi <= lo) hi = lo + 1;
    SvgAxis ya = svg_axis(lo, hi);
    svg_open(b, "bars", title);
    svg_axes(b, NULL, &ya, NULL);
    double slot = (double)SVG_PW / (double)(n ? n : 1), zero = svg_py(&ya, 0);
    for (int64_t i = 0; i < n; i++) {
        double x = SVG_LEFT + slot * (double)i, w = slot * 0.7;
        html_printf(b, "<text x=\"%.2f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\" "
                       "fill=\"#222\">", x + slot / 2, SVG_TOP + SVG_PH + 14);
        html_esc_short(b, labels[i], (size_t)(slot / 6 > 3 ? slot / 6 : 3));
        html_put(b, "</text>");
        if (!isfinite(values[i])) continue;
        double y = svg_py(&ya, values[i]);
        html_printf(b,
                    "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                    "fill=\"%s\"><title>",
                    x + slot * 0.15, fmin(y, zero), w, fabs(zero - y), svg_color(i));
        html_esc(b, labels[i]);
        html_printf(b, ": %.4g</title></rect>", values[i]);
    }
    html_put(b, "</svg>");
}
