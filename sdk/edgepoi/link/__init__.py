"""The device's link to the edge node: a store-and-forward queue on flash and an MQTT link that drains it.

- ``flashq.FlashQueue``: append-only records with a CRC on flash; survives power cuts (a torn last record
  is detected and dropped at the next boot); bounded in size.
- ``link.Link``: keeps an MQTT session up (capped exponential backoff with jitter, keepalive, Last Will,
  resubscribe), publishes queued records at QoS 1 with several in flight, and retransmits what was not
  acknowledged after a reconnect.
"""
