//! [`RedisTeams`] on a real `redis-server`: each script's answers, the
//! tombstone's rule (a deletion ends the records made before it only), and
//! a record Redis holds that this gateway cannot read.

use std::time::Duration;

use tollgate_testkit::RedisServer;

use super::RedisTeams;
use crate::teams::team::{Team, Tombstone};

fn teams(server: &RedisServer) -> RedisTeams {
    let client = redis::Client::open(server.url()).unwrap();
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(Duration::from_secs(1)));
    let manager = redis::aio::ConnectionManager::new_lazy_with_config(client, config).unwrap();
    RedisTeams::new(manager, "test:", Duration::from_secs(2))
}

#[tokio::test]
async fn teams_are_made_once_updated_while_alive_and_buried_for_good() {
    let server = RedisServer::start().await;
    let redis = teams(&server);
    let mut team = Team::new("search".into(), 1_000);
    team.rpm_limit = Some(60);

    assert!(redis.create(&team).await.unwrap(), "a new id is stored");
    assert!(!redis.create(&team).await.unwrap(), "an id in use is not");
    let remote = redis.get("search").await.unwrap();
    assert_eq!(remote.team.as_ref().unwrap().rpm_limit, Some(60));
    assert!(remote.tombstone.is_none());

    team.rpm_limit = Some(120);
    team.updated_at_ms = 2_000;
    assert!(redis.update(&team).await.unwrap());
    let all = redis.all().await.unwrap();
    assert_eq!(all["search"].team.as_ref().unwrap().rpm_limit, Some(120));

    let tombstone = Tombstone {
        team_id: "search".into(),
        deleted_at_ms: 3_000,
    };
    redis.bury(&tombstone, None).await.unwrap();
    let remote = redis.get("search").await.unwrap();
    assert!(remote.team.is_none(), "the deletion removes the record");
    assert_eq!(remote.tombstone, Some(tombstone.clone()));
    assert!(
        !redis.update(&team).await.unwrap(),
        "a deleted team is not updated back to life"
    );
    // A replica's copy made before the deletion is not put back...
    assert!(!redis.restore(&team).await.unwrap());
    assert!(redis.get("search").await.unwrap().team.is_none());
    // ...but a team made again with the same id, later, lives.
    let again = Team::new("search".into(), 4_000);
    assert!(redis.restore(&again).await.unwrap());
    assert!(redis.get("search").await.unwrap().team.is_some());
    assert!(
        !redis.restore(&again).await.unwrap(),
        "a team Redis has is not written again"
    );
    // An older deletion arriving late leaves the newer team alone.
    redis
        .bury(&tombstone, Some(RedisTeams::sync_timeout()))
        .await
        .unwrap();
    assert!(redis.get("search").await.unwrap().team.is_some());
}

#[tokio::test]
async fn a_record_this_gateway_cannot_read_is_an_error_not_a_missing_team() {
    let server = RedisServer::start().await;
    let redis = teams(&server);
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg("test:teams")
        .arg("broken")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(redis.all().await.is_err());
    assert!(redis.get("broken").await.is_err());
    assert!(redis.get("absent").await.unwrap().team.is_none());
}
