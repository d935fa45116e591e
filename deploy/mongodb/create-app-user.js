// Run once by the mongo image on first start (docker-entrypoint-initdb.d), as the root user:
// the app user of docker-compose.yml, allowed to read and write the taskproc database only.
db.getSiblingDB("taskproc").createUser({
  user: "taskproc",
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "readWrite", db: "taskproc" }],
});
