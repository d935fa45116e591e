// The compose `cluster` profile's one-shot `mongodb-replica-set` job, run with mongosh against
// mongodb-1 as root: makes the three members replica set rs0. Idempotent: a set already made
// is left as it is. mongodb-1 (which made the root and app users on its first start, see
// create-app-user.js) has the highest priority, so it is primary while it is up; the other
// two copy its data, users included, by initial sync.
const members = [
  { _id: 0, host: "mongodb-1:27017", priority: 2 },
  { _id: 1, host: "mongodb-2:27017", priority: 1 },
  { _id: 2, host: "mongodb-3:27017", priority: 1 },
];
let initiated = true;
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  initiated = false;
}
if (!initiated) {
  rs.initiate({ _id: "rs0", members: members });
  print("replica set rs0 initiated");
} else {
  print("replica set rs0 exists already");
}
