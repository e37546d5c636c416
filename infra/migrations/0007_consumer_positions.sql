-- Where the sink has read each partition up to, kept with the rows it wrote: written in the
-- same transaction as each batch, read back (and sought to) whenever a partition is assigned.
-- A restored database therefore carries the positions that match its rows, and the sink
-- re-reads everything stored after the backup. Kafka's committed offsets follow these (they
-- serve lag monitoring); they are never the source of truth while a row here exists.
-- (The number 0007 leaves 0005 and 0006 to migrations written alongside; the runner applies
-- every file not yet applied, in name order.)
CREATE TABLE pipeline.consumer_positions (
    consumer    text        NOT NULL,           -- a logical name ('sink'), not a Kafka group
    topic       text        NOT NULL,           -- the topic's full name, prefix included
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
