// svg: charts as inline SVG elements, written into an HtmlBuf (html.h): a histogram, a line chart
// of several series with a legend, a calibration curve and a bar chart, each with axes and ticks.
//
// Every chart is one <svg class="chart chart-KIND"> (KIND: histogram, lines, calibration, bars)
// with a <title>; its parts carry stable class names so that tests and style sheets can find
// them: class="bar" (one per histogram bin holding data, one per bar of a bar chart),
// class="series" (one polyline per line-chart series with a finite point), class="legend-item",
// class="diagonal" and class="point" (calibration), class="tick" (axis ticks), class="axis".
// Colours are presentation attributes, not style, so a page under a Content-Security-Policy
// without 'unsafe-inline' draws them. Every text given (titles, labels, series names) is escaped.
// Non-finite values are left out (a NaN point, bar or bin draws nothing).
#ifndef SVG_H
#define SVG_H
#include "html.h"
#include <stdint.h>

#define SVG_WIDTH  520
#define SVG_HEIGHT 250

// The colour of series or group i (a fixed palette of 8, repeated).
const char *svg_color(int64_t i);

// A histogram: counts[0..bins) over [lo, hi) in equal bins. One class="bar" per bin with a count
// above 0. xlabel names the values.
void svg_histogram(HtmlBuf *b, const char *title, const char *xlabel, const int64_t *counts,
                   int64_t bins, double lo, double hi);

typedef struct {
    const char *name;          // shown in the legend
    const double *x, *y;       // (n) points, in increasing x
    int64_t n;
} SvgSeries;
// A line chart: every series on one pair of axes, one colour each, a legend. A series of more
// than two points per pixel column draws each column's first, lowest, highest and last points.
void svg_lines(HtmlBuf *b, const char *title, const char *xlabel, const SvgSeries *series,
               int64_t nseries);

// A calibration curve: predicted[i] (x) against observed[i] (y) for n buckets, both in [0, 1],
// with the diagonal y = x (perfect calibration); count[i] is shown with each point's tooltip and
// buckets with count 0 are left out.
void svg_calibration(HtmlBuf *b, const char *title, const double *predicted,
                     const double *observed, const int64_t *count, int64_t n);

// A bar chart: values[0..n) labelled labels[0..n); the y axis from 0 (or the lowest value when
// negative) to ymax, or to the largest value when ymax <= 0.
void svg_bars(HtmlBuf *b, const char *title, const char *const *labels, const double *values,
              int64_t n, double ymax);
#endif
