// tfevents: TensorBoard event files written by hand: TFRecord framing around Event protocol
// buffers (protobuf wire format), scalars only.
//
// A record is: uint64 length (little-endian), uint32 masked CRC-32C of those 8 bytes, the data,
// uint32 masked CRC-32C of the data (hash.h). The data is a tensorflow.Event:
//   wall_time  field 1, double (fixed64)
//   step       field 2, int64 (varint)
//   file_version field 3, string: "brain.Event:2", in the file's first event
//   summary    field 5, Summary { repeated Value value = 1 { string tag = 1; float simple_value
//              = 2 } }
// A file is read by TensorBoard when its name contains "tfevents".
#ifndef TFEVENTS_H
#define TFEVENTS_H
#include <stdint.h>
#include <stdio.h>

// Appends the record holding data[0..n) to f. 0, or -1 when a write fails (errno set).
int tfevents_write_record(FILE *f, const unsigned char *data, size_t n);
// Appends the first event of a file: wall_time and file_version "brain.Event:2".
int tfevents_write_version(FILE *f, double wall_time);
// Appends one scalar: an Event with wall_time, step and a Summary of one value (tag, value).
int tfevents_write_scalar(FILE *f, double wall_time, int64_t step, const char *tag, float value);
#endif
