/* Test harness around libusbredirparser (the reference C usbredir parser).
 *
 *   harness parse ROLE CAPS           stdin: a usbredir byte stream sent TO a parser of ROLE;
 *                                     stdout: one normalised line per packet ("ERROR" on a parse
 *                                     error; the C parser then skips that packet)
 *   harness write ROLE CAPS           stdin: "peer caps=N" then one packet line per packet;
 *                                     stdout: the byte stream a ROLE parser writes (its hello first)
 *   harness bench ROLE CAPS FILE N    parse FILE N times from memory; prints "packets bytes seconds errors"
 *   harness sizes                     sizeof of every usbredirproto.h struct
 *
 * ROLE is host or guest, CAPS our capability word.  Line format: "name key=value ...", integers in
 * decimal, arrays comma separated, data as hex ("data=" when empty).  Fields are printed by their
 * names in the C structs; cap-dependent fields only when negotiated; bulk length is the full
 * 32-bit value; interface_info arrays have interface_count entries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <usbredirparser.h>
#include <usbredirfilter.h>

static struct usbredirparser *P;
static const uint8_t *in_buf;
static size_t in_len, in_pos;
static int mode_bench;
static unsigned long long n_packets;

static int neg(int cap) { return usbredirparser_have_cap(P, cap) && usbredirparser_peer_has_cap(P, cap); }

static void pr_arr8(const char *k, const uint8_t *a, int n) {
    printf(" %s=", k);
    for (int i = 0; i < n; i++) printf(i ? ",%u" : "%u", a[i]);
}
static void pr_arr16(const char *k, const void *a, int n) {
    printf(" %s=", k);
    for (int i = 0; i < n; i++) { uint16_t v; memcpy(&v, (const uint8_t *)a + 2 * i, 2); printf(i ? ",%u" : "%u", v); }
}
static void pr_arr32(const char *k, const void *a, int n) {
    printf(" %s=", k);
    for (int i = 0; i < n; i++) { uint32_t v; memcpy(&v, (const uint8_t *)a + 4 * i, 4); printf(i ? ",%u" : "%u", v); }
}
static void pr_data(const uint8_t *d, int n) {
    printf(" data=");
    for (int i = 0; i < n; i++) printf("%02x", d[i]);
}

/* ---------------------------------------------------------------- callbacks (parse mode) */
static void cb_log(void *priv, int level, const char *msg) {
    if (level <= usbredirparser_error && getenv("HARNESS_LOG")) fprintf(stderr, "C: %s\n", msg);
}
static int cb_read(void *priv, uint8_t *data, int count) {
    size_t n = in_len - in_pos;
    if (n == 0) return 0;
    if ((size_t)count < n) n = count;
    memcpy(data, in_buf + in_pos, n);
    in_pos += n;
    return (int)n;
}
static int cb_write_discard(void *priv, uint8_t *data, int count) { return count; }
static int cb_write_stdout(void *priv, uint8_t *data, int count) {
    return (int)fwrite(data, 1, count, stdout);
}

#define BENCH_RETURN do { if (mode_bench) { n_packets++; return; } } while (0)
#define BENCH_FREE(d) do { if (mode_bench) { n_packets++; usbredirparser_free_packet_data(P, d); return; } } while (0)

static void cb_hello(void *priv, struct usb_redir_hello_header *h) {
    BENCH_RETURN;
    uint32_t caps = 0;
    for (int i = 0; i < 32; i++) if (usbredirparser_peer_has_cap(P, i)) caps |= 1u << i;
    printf("hello version=%s caps=%u\n", h->version, caps);
}
static void cb_device_connect(void *priv, struct usb_redir_device_connect_header *h) {
    BENCH_RETURN;
    printf("device_connect speed=%u device_class=%u device_subclass=%u device_protocol=%u vendor_id=%u product_id=%u",
           h->speed, h->device_class, h->device_subclass, h->device_protocol, h->vendor_id, h->product_id);
    if (neg(usb_redir_cap_connect_device_version)) printf(" device_version_bcd=%u", h->device_version_bcd);
    printf("\n");
}
static void cb_device_disconnect(void *priv) { BENCH_RETURN; printf("device_disconnect\n"); }
static void cb_reset(void *priv) { BENCH_RETURN; printf("reset\n"); }
static void cb_interface_info(void *priv, struct usb_redir_interface_info_header *h) {
    BENCH_RETURN;
    printf("interface_info interface_count=%u", h->interface_count);
    pr_arr8("interface", h->interface, h->interface_count);
    pr_arr8("interface_class", h->interface_class, h->interface_count);
    pr_arr8("interface_subclass", h->interface_subclass, h->interface_count);
    pr_arr8("interface_protocol", h->interface_protocol, h->interface_count);
    printf("\n");
}
static void cb_ep_info(void *priv, struct usb_redir_ep_info_header *h) {
    BENCH_RETURN;
    printf("ep_info");
    pr_arr8("type", h->type, 32);
    pr_arr8("interval", h->interval, 32);
    pr_arr8("interface", h->interface, 32);
    if (neg(usb_redir_cap_ep_info_max_packet_size)) pr_arr16("max_packet_size", (const uint8_t *)h + 96, 32);
    if (neg(usb_redir_cap_bulk_streams)) pr_arr32("max_streams", (const uint8_t *)h + 160, 32);
    printf("\n");
}
#define ID_CB(fn, name) static void fn(void *priv, uint64_t id) { BENCH_RETURN; printf(name " id=%llu\n", (unsigned long long)id); }
ID_CB(cb_get_configuration, "get_configuration")
ID_CB(cb_cancel_data_packet, "cancel_data_packet")
static void cb_filter_reject(void *priv) { BENCH_RETURN; printf("filter_reject\n"); }
static void cb_device_disconnect_ack(void *priv) { BENCH_RETURN; printf("device_disconnect_ack\n"); }

#define CB1(fn, st, name, f1) static void fn(void *priv, uint64_t id, struct st *h) { BENCH_RETURN; \
    printf(name " id=%llu " #f1 "=%u\n", (unsigned long long)id, (unsigned)h->f1); }
#define CB2(fn, st, name, f1, f2) static void fn(void *priv, uint64_t id, struct st *h) { BENCH_RETURN; \
    printf(name " id=%llu " #f1 "=%u " #f2 "=%u\n", (unsigned long long)id, (unsigned)h->f1, (unsigned)h->f2); }
#define CB3(fn, st, name, f1, f2, f3) static void fn(void *priv, uint64_t id, struct st *h) { BENCH_RETURN; \
    printf(name " id=%llu " #f1 "=%u " #f2 "=%u " #f3 "=%u\n", (unsigned long long)id, (unsigned)h->f1, \
           (unsigned)h->f2, (unsigned)h->f3); }
#define CB4(fn, st, name, f1, f2, f3, f4) static void fn(void *priv, uint64_t id, struct st *h) { BENCH_RETURN; \
    printf(name " id=%llu " #f1 "=%u " #f2 "=%u " #f3 "=%u " #f4 "=%u\n", (unsigned long long)id, \
           (unsigned)h->f1, (unsigned)h->f2, (unsigned)h->f3, (unsigned)h->f4); }

CB1(cb_set_configuration, usb_redir_set_configuration_header, "set_configuration", configuration)
CB2(cb_configuration_status, usb_redir_configuration_status_header, "configuration_status", status, configuration)
CB2(cb_set_alt_setting, usb_redir_set_alt_setting_header, "set_alt_setting", interface, alt)
CB1(cb_get_alt_setting, usb_redir_get_alt_setting_header, "get_alt_setting", interface)
CB3(cb_alt_setting_status, usb_redir_alt_setting_status_header, "alt_setting_status", status, interface, alt)
CB3(cb_start_iso_stream, usb_redir_start_iso_stream_header, "start_iso_stream", endpoint, pkts_per_urb, no_urbs)
CB1(cb_stop_iso_stream, usb_redir_stop_iso_stream_header, "stop_iso_stream", endpoint)
CB2(cb_iso_stream_status, usb_redir_iso_stream_status_header, "iso_stream_status", status, endpoint)
CB1(cb_start_interrupt_receiving, usb_redir_start_interrupt_receiving_header, "start_interrupt_receiving", endpoint)
CB1(cb_stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header, "stop_interrupt_receiving", endpoint)
CB2(cb_interrupt_receiving_status, usb_redir_interrupt_receiving_status_header, "interrupt_receiving_status", status, endpoint)
CB2(cb_alloc_bulk_streams, usb_redir_alloc_bulk_streams_header, "alloc_bulk_streams", endpoints, no_streams)
CB1(cb_free_bulk_streams, usb_redir_free_bulk_streams_header, "free_bulk_streams", endpoints)
CB3(cb_bulk_streams_status, usb_redir_bulk_streams_status_header, "bulk_streams_status", endpoints, no_streams, status)
CB4(cb_start_bulk_receiving, usb_redir_start_bulk_receiving_header, "start_bulk_receiving", stream_id, bytes_per_transfer, endpoint, no_transfers)
CB2(cb_stop_bulk_receiving, usb_redir_stop_bulk_receiving_header, "stop_bulk_receiving", stream_id, endpoint)
CB3(cb_bulk_receiving_status, usb_redir_bulk_receiving_status_header, "bulk_receiving_status", stream_id, endpoint, status)

static void cb_filter_filter(void *priv, struct usbredirfilter_rule *rules, int count) {
    if (mode_bench) { n_packets++; free(rules); return; }
    char *s = usbredirfilter_rules_to_string(rules, count, ",", "|");
    printf("filter_filter rules=%s\n", s ? s : "");
    free(s);
    free(rules);
}
static void cb_control(void *priv, uint64_t id, struct usb_redir_control_packet_header *h, uint8_t *d, int n) {
    BENCH_FREE(d);
    printf("control_packet id=%llu endpoint=%u request=%u requesttype=%u status=%u value=%u index=%u length=%u",
           (unsigned long long)id, h->endpoint, h->request, h->requesttype, h->status, h->value, h->index, h->length);
    pr_data(d, n); printf("\n");
    usbredirparser_free_packet_data(P, d);
}
static void cb_bulk(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h, uint8_t *d, int n) {
    BENCH_FREE(d);
    printf("bulk_packet id=%llu endpoint=%u status=%u length=%u stream_id=%u", (unsigned long long)id,
           h->endpoint, h->status, ((uint32_t)h->length_high << 16) | h->length, h->stream_id);
    pr_data(d, n); printf("\n");
    usbredirparser_free_packet_data(P, d);
}
static void cb_iso(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h, uint8_t *d, int n) {
    BENCH_FREE(d);
    printf("iso_packet id=%llu endpoint=%u status=%u length=%u", (unsigned long long)id, h->endpoint, h->status, h->length);
    pr_data(d, n); printf("\n");
    usbredirparser_free_packet_data(P, d);
}
static void cb_interrupt(void *priv, uint64_t id, struct usb_redir_interrupt_packet_header *h, uint8_t *d, int n) {
    BENCH_FREE(d);
    printf("interrupt_packet id=%llu endpoint=%u status=%u length=%u", (unsigned long long)id, h->endpoint, h->status, h->length);
    pr_data(d, n); printf("\n");
    usbredirparser_free_packet_data(P, d);
}
static void cb_buffered_bulk(void *priv, uint64_t id, struct usb_redir_buffered_bulk_packet_header *h, uint8_t *d, int n) {
    BENCH_FREE(d);
    printf("buffered_bulk_packet id=%llu stream_id=%u length=%u endpoint=%u status=%u", (unsigned long long)id,
           h->stream_id, h->length, h->endpoint, h->status);
    pr_data(d, n); printf("\n");
    usbredirparser_free_packet_data(P, d);
}

static struct usbredirparser *make_parser(int host, uint32_t caps, usbredirparser_write wr) {
    struct usbredirparser *p = usbredirparser_create();
    p->log_func = cb_log;
    p->read_func = cb_read;
    p->write_func = wr;
    p->hello_func = cb_hello;
    p->device_connect_func = cb_device_connect;
    p->device_disconnect_func = cb_device_disconnect;
    p->reset_func = cb_reset;
    p->interface_info_func = cb_interface_info;
    p->ep_info_func = cb_ep_info;
    p->set_configuration_func = cb_set_configuration;
    p->get_configuration_func = cb_get_configuration;
    p->configuration_status_func = cb_configuration_status;
    p->set_alt_setting_func = cb_set_alt_setting;
    p->get_alt_setting_func = cb_get_alt_setting;
    p->alt_setting_status_func = cb_alt_setting_status;
    p->start_iso_stream_func = cb_start_iso_stream;
    p->stop_iso_stream_func = cb_stop_iso_stream;
    p->iso_stream_status_func = cb_iso_stream_status;
    p->start_interrupt_receiving_func = cb_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = cb_stop_interrupt_receiving;
    p->interrupt_receiving_status_func = cb_interrupt_receiving_status;
    p->alloc_bulk_streams_func = cb_alloc_bulk_streams;
    p->free_bulk_streams_func = cb_free_bulk_streams;
    p->bulk_streams_status_func = cb_bulk_streams_status;
    p->cancel_data_packet_func = cb_cancel_data_packet;
    p->filter_reject_func = cb_filter_reject;
    p->filter_filter_func = cb_filter_filter;
    p->device_disconnect_ack_func = cb_device_disconnect_ack;
    p->start_bulk_receiving_func = cb_start_bulk_receiving;
    p->stop_bulk_receiving_func = cb_stop_bulk_receiving;
    p->bulk_receiving_status_func = cb_bulk_receiving_status;
    p->control_packet_func = cb_control;
    p->bulk_packet_func = cb_bulk;
    p->iso_packet_func = cb_iso;
    p->interrupt_packet_func = cb_interrupt;
    p->buffered_bulk_packet_func = cb_buffered_bulk;
    usbredirparser_init(p, "C harness", &caps, 1, host ? usbredirparser_fl_usb_host : 0);
    return p;
}

static uint8_t *slurp(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0, r;
    uint8_t *b = malloc(cap);
    while ((r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) b = realloc(b, cap *= 2);
    }
    *len = n;
    return b;
}

static int run_parse(void) {
    int errors = 0;
    for (;;) {
        int r = usbredirparser_do_read(P);
        if (r == usbredirparser_read_parse_error) {
            if (!mode_bench) printf("ERROR\n");
            errors++;
            continue;
        }
        if (in_pos >= in_len) break;
    }
    return errors;
}

/* ---------------------------------------------------------------- write mode */
static const char *getkey(const char *line, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)); p++)
        if ((p == line || p[-1] == ' ') && p[kl] == '=') return p + kl + 1;
    return NULL;
}
static unsigned long long getv(const char *line, const char *key) {
    const char *v = getkey(line, key);
    if (!v) { fprintf(stderr, "missing %s in %s", key, line); exit(2); }
    return strtoull(v, NULL, 10);
}
static void getarr(const char *line, const char *key, void *out, int width, int n) {
    const char *v = getkey(line, key);
    char *end;
    for (int i = 0; i < n; i++) {
        unsigned long x = v ? strtoul(v, &end, 10) : 0;
        if (v) v = (*end == ',') ? end + 1 : NULL;
        if (width == 1) ((uint8_t *)out)[i] = x;
        else if (width == 2) ((uint16_t *)out)[i] = x;
        else ((uint32_t *)out)[i] = x;
    }
}
static uint8_t *getdata(const char *line, int *n) {
    const char *v = getkey(line, "data");
    *n = 0;
    if (!v) return NULL;
    size_t l = strcspn(v, " \n");
    uint8_t *d = malloc(l / 2 + 1);
    for (size_t i = 0; i + 1 < l; i += 2) {
        unsigned x;
        sscanf(v + i, "%2x", &x);
        d[(*n)++] = x;
    }
    return d;
}

static void write_line(const char *line) {
    char name[64];
    if (sscanf(line, "%63s", name) != 1) return;
    uint64_t id = getkey(line, "id") ? getv(line, "id") : 0;
#define IS(n) (strcmp(name, n) == 0)
    if (IS("device_connect")) {
        struct usb_redir_device_connect_header h = { getv(line, "speed"), getv(line, "device_class"),
            getv(line, "device_subclass"), getv(line, "device_protocol"), getv(line, "vendor_id"),
            getv(line, "product_id"), getkey(line, "device_version_bcd") ? getv(line, "device_version_bcd") : 0 };
        usbredirparser_send_device_connect(P, &h);
    } else if (IS("device_disconnect")) usbredirparser_send_device_disconnect(P);
    else if (IS("reset")) usbredirparser_send_reset(P);
    else if (IS("interface_info")) {
        struct usb_redir_interface_info_header h = { 0 };
        h.interface_count = getv(line, "interface_count");
        getarr(line, "interface", h.interface, 1, h.interface_count);
        getarr(line, "interface_class", h.interface_class, 1, h.interface_count);
        getarr(line, "interface_subclass", h.interface_subclass, 1, h.interface_count);
        getarr(line, "interface_protocol", h.interface_protocol, 1, h.interface_count);
        usbredirparser_send_interface_info(P, &h);
    } else if (IS("ep_info")) {
        struct usb_redir_ep_info_header h = { 0 };
        getarr(line, "type", h.type, 1, 32);
        getarr(line, "interval", h.interval, 1, 32);
        getarr(line, "interface", h.interface, 1, 32);
        getarr(line, "max_packet_size", h.max_packet_size, 2, 32);
        getarr(line, "max_streams", h.max_streams, 4, 32);
        usbredirparser_send_ep_info(P, &h);
    }
#define W1(n, st, fn, f1) else if (IS(n)) { struct st h = { getv(line, #f1) }; fn(P, id, &h); }
#define W2(n, st, fn, f1, f2) else if (IS(n)) { struct st h = { getv(line, #f1), getv(line, #f2) }; fn(P, id, &h); }
#define W3(n, st, fn, f1, f2, f3) else if (IS(n)) { struct st h = { getv(line, #f1), getv(line, #f2), getv(line, #f3) }; fn(P, id, &h); }
#define W4(n, st, fn, f1, f2, f3, f4) else if (IS(n)) { struct st h = { getv(line, #f1), getv(line, #f2), getv(line, #f3), getv(line, #f4) }; fn(P, id, &h); }
    W1("set_configuration", usb_redir_set_configuration_header, usbredirparser_send_set_configuration, configuration)
    else if (IS("get_configuration")) usbredirparser_send_get_configuration(P, id);
    W2("configuration_status", usb_redir_configuration_status_header, usbredirparser_send_configuration_status, status, configuration)
    W2("set_alt_setting", usb_redir_set_alt_setting_header, usbredirparser_send_set_alt_setting, interface, alt)
    W1("get_alt_setting", usb_redir_get_alt_setting_header, usbredirparser_send_get_alt_setting, interface)
    W3("alt_setting_status", usb_redir_alt_setting_status_header, usbredirparser_send_alt_setting_status, status, interface, alt)
    W3("start_iso_stream", usb_redir_start_iso_stream_header, usbredirparser_send_start_iso_stream, endpoint, pkts_per_urb, no_urbs)
    W1("stop_iso_stream", usb_redir_stop_iso_stream_header, usbredirparser_send_stop_iso_stream, endpoint)
    W2("iso_stream_status", usb_redir_iso_stream_status_header, usbredirparser_send_iso_stream_status, status, endpoint)
    W1("start_interrupt_receiving", usb_redir_start_interrupt_receiving_header, usbredirparser_send_start_interrupt_receiving, endpoint)
    W1("stop_interrupt_receiving", usb_redir_stop_interrupt_receiving_header, usbredirparser_send_stop_interrupt_receiving, endpoint)
    W2("interrupt_receiving_status", usb_redir_interrupt_receiving_status_header, usbredirparser_send_interrupt_receiving_status, status, endpoint)
    W2("alloc_bulk_streams", usb_redir_alloc_bulk_streams_header, usbredirparser_send_alloc_bulk_streams, endpoints, no_streams)
    W1("free_bulk_streams", usb_redir_free_bulk_streams_header, usbredirparser_send_free_bulk_streams, endpoints)
    W3("bulk_streams_status", usb_redir_bulk_streams_status_header, usbredirparser_send_bulk_streams_status, endpoints, no_streams, status)
    else if (IS("cancel_data_packet")) usbredirparser_send_cancel_data_packet(P, id);
    else if (IS("filter_reject")) usbredirparser_send_filter_reject(P);
    else if (IS("filter_filter")) {
        const char *v = getkey(line, "rules");
        char buf[4096];
        size_t l = v ? strcspn(v, " \n") : 0;
        if (l >= sizeof(buf)) l = sizeof(buf) - 1;
        memcpy(buf, v ? v : "", l);
        buf[l] = 0;
        struct usbredirfilter_rule *rules;
        int count;
        if (usbredirfilter_string_to_rules(buf, ",", "|", &rules, &count) == 0) {
            usbredirparser_send_filter_filter(P, rules, count);
            free(rules);
        }
    } else if (IS("device_disconnect_ack")) {
        /* libusbredirparser sends the ack itself; there is no public send function */
    }
    W4("start_bulk_receiving", usb_redir_start_bulk_receiving_header, usbredirparser_send_start_bulk_receiving, stream_id, bytes_per_transfer, endpoint, no_transfers)
    W2("stop_bulk_receiving", usb_redir_stop_bulk_receiving_header, usbredirparser_send_stop_bulk_receiving, stream_id, endpoint)
    W3("bulk_receiving_status", usb_redir_bulk_receiving_status_header, usbredirparser_send_bulk_receiving_status, stream_id, endpoint, status)
    else if (IS("control_packet")) {
        struct usb_redir_control_packet_header h = { getv(line, "endpoint"), getv(line, "request"),
            getv(line, "requesttype"), getv(line, "status"), getv(line, "value"), getv(line, "index"),
            getv(line, "length") };
        int n; uint8_t *d = getdata(line, &n);
        usbredirparser_send_control_packet(P, id, &h, n ? d : NULL, n);
        free(d);
    } else if (IS("bulk_packet")) {
        uint32_t len = getv(line, "length");
        struct usb_redir_bulk_packet_header h = { getv(line, "endpoint"), getv(line, "status"), len & 0xffff,
            getv(line, "stream_id"), len >> 16 };
        int n; uint8_t *d = getdata(line, &n);
        usbredirparser_send_bulk_packet(P, id, &h, n ? d : NULL, n);
        free(d);
    } else if (IS("iso_packet") || IS("interrupt_packet")) {
        struct usb_redir_iso_packet_header h = { getv(line, "endpoint"), getv(line, "status"), getv(line, "length") };
        int n; uint8_t *d = getdata(line, &n);
        if (IS("iso_packet")) usbredirparser_send_iso_packet(P, id, &h, n ? d : NULL, n);
        else usbredirparser_send_interrupt_packet(P, id, (struct usb_redir_interrupt_packet_header *)&h, n ? d : NULL, n);
        free(d);
    } else if (IS("buffered_bulk_packet")) {
        struct usb_redir_buffered_bulk_packet_header h = { getv(line, "stream_id"), getv(line, "length"),
            getv(line, "endpoint"), getv(line, "status") };
        int n; uint8_t *d = getdata(line, &n);
        usbredirparser_send_buffered_bulk_packet(P, id, &h, n ? d : NULL, n);
        free(d);
    } else {
        fprintf(stderr, "unknown packet %s\n", name);
        exit(2);
    }
}

#define SZ(t) printf(#t " %zu\n", sizeof(struct t))
static void print_sizes(void) {
    SZ(usb_redir_header); SZ(usb_redir_hello_header); SZ(usb_redir_device_connect_header);
    SZ(usb_redir_interface_info_header); SZ(usb_redir_ep_info_header); SZ(usb_redir_set_configuration_header);
    SZ(usb_redir_configuration_status_header); SZ(usb_redir_set_alt_setting_header);
    SZ(usb_redir_get_alt_setting_header); SZ(usb_redir_alt_setting_status_header);
    SZ(usb_redir_start_iso_stream_header); SZ(usb_redir_stop_iso_stream_header);
    SZ(usb_redir_iso_stream_status_header); SZ(usb_redir_start_interrupt_receiving_header);
    SZ(usb_redir_stop_interrupt_receiving_header); SZ(usb_redir_interrupt_receiving_status_header);
    SZ(usb_redir_alloc_bulk_streams_header); SZ(usb_redir_free_bulk_streams_header);
    SZ(usb_redir_bulk_streams_status_header); SZ(usb_redir_start_bulk_receiving_header);
    SZ(usb_redir_stop_bulk_receiving_header); SZ(usb_redir_bulk_receiving_status_header);
    SZ(usb_redir_control_packet_header); SZ(usb_redir_bulk_packet_header); SZ(usb_redir_iso_packet_header);
    SZ(usb_redir_interrupt_packet_header); SZ(usb_redir_buffered_bulk_packet_header);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "sizes") == 0) { print_sizes(); return 0; }
    if (argc < 4) { fprintf(stderr, "usage: harness parse|write|bench host|guest CAPS [FILE N]\n"); return 2; }
    int host = strcmp(argv[2], "host") == 0;
    uint32_t caps = strtoul(argv[3], NULL, 0);
    if (strcmp(argv[1], "parse") == 0) {
        in_buf = slurp(stdin, &in_len);
        P = make_parser(host, caps, cb_write_discard);
        run_parse();
        fflush(stdout);
        return 0;
    }
    if (strcmp(argv[1], "bench") == 0 && argc >= 6) {
        FILE *f = fopen(argv[4], "rb");
        if (!f) { perror(argv[4]); return 2; }
        in_buf = slurp(f, &in_len);
        fclose(f);
        int reps = atoi(argv[5]);
        mode_bench = 1;
        struct timespec t0, t1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
        int errors = 0;
        for (int i = 0; i < reps; i++) {
            in_pos = 0;
            P = make_parser(host, caps, cb_write_discard);
            errors += run_parse();
            usbredirparser_destroy(P);
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
        double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("%llu %llu %.6f %d\n", n_packets, (unsigned long long)in_len * reps, secs, errors);
        return 0;
    }
    if (strcmp(argv[1], "write") == 0) {
        /* the first line gives the peer's caps; feed the parser a peer hello with them */
        static char line[1 << 22];
        if (!fgets(line, sizeof(line), stdin)) return 2;
        uint32_t peer_caps = getv(line, "caps");
        static uint8_t hello[12 + 64 + 4];
        uint32_t hdr[3] = { usb_redir_hello, 68, 0 };
        memcpy(hello, hdr, 12);
        strcpy((char *)hello + 12, "peer");
        memcpy(hello + 76, &peer_caps, 4);
        in_buf = hello; in_len = sizeof(hello); in_pos = 0;
        mode_bench = 1; /* don't print the peer hello */
        P = make_parser(host, caps, cb_write_stdout);
        usbredirparser_do_read(P);
        mode_bench = 0;
        while (fgets(line, sizeof(line), stdin)) write_line(line);
        usbredirparser_do_write(P);
        fflush(stdout);
        return 0;
    }
    return 2;
}
