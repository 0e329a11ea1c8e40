/* Writes or reads one topic for a while, as the participant its CYCLONEDDS_URI configures (with or
 * without DDS Security). Prints one line: "wrote N" / "received N", or why an entity could not be
 * created ("writer: ..."). Built against the system's Cyclone DDS (Debian 12: cyclonedds-dev). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dds/dds.h"
#include "Msg.h"

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "pub") && strcmp(argv[1], "sub"))) {
    fprintf(stderr, "usage: %s pub|sub TOPIC SECONDS\n", argv[0]);
    return 2;
  }
  int pub = strcmp(argv[1], "pub") == 0;
  double seconds = atof(argv[3]);
  dds_entity_t pp = dds_create_participant(DDS_DOMAIN_DEFAULT, NULL, NULL);
  if (pp < 0) { printf("participant: %s\n", dds_strretcode(-pp)); return 3; }
  dds_entity_t tp = dds_create_topic(pp, &ivltest_Msg_desc, argv[2], NULL, NULL);
  if (tp < 0) { printf("topic: %s\n", dds_strretcode(-tp)); return 4; }
  dds_qos_t *qos = dds_create_qos();
  dds_qset_reliability(qos, DDS_RELIABILITY_RELIABLE, DDS_SECS(1));
  long n = 0;
  dds_time_t end = dds_time() + (dds_time_t)(seconds * 1e9);
  if (pub) {
    dds_entity_t w = dds_create_writer(pp, tp, qos, NULL);
    if (w < 0) { printf("writer: %s\n", dds_strretcode(-w)); return 5; }
    ivltest_Msg m = { .data = "move" };
    while (dds_time() < end) {
      if (dds_write(w, &m) == DDS_RETCODE_OK) n++;
      dds_sleepfor(DDS_MSECS(50));
    }
    printf("wrote %ld\n", n);
  } else {
    dds_entity_t r = dds_create_reader(pp, tp, qos, NULL);
    if (r < 0) { printf("reader: %s\n", dds_strretcode(-r)); return 5; }
    void *samples[16] = { NULL };
    dds_sample_info_t infos[16];
    while (dds_time() < end) {
      int k = dds_take(r, samples, infos, 16, 16);
      for (int i = 0; i < k; i++) if (infos[i].valid_data) n++;
      if (k > 0) dds_return_loan(r, samples, k);
      dds_sleepfor(DDS_MSECS(20));
    }
    printf("received %ld\n", n);
  }
  dds_delete_qos(qos);
  dds_delete(pp);
  return 0;
}
