# Sourced by the load scripts: removes the RabbitMQ queues a run created under its prefix.
#   delete_queues PREFIX
delete_queues() {
  local q
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$1\." || true); do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
}
