"""Getting rows from live sources into safecity: who may write (tokens), what a posted row
must look like (rows), how a source sends them (client), and bridges from other systems
(frigate, mqtt)."""
